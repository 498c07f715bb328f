"""The layers' import rules (docs/ARCHITECTURE.md), read from the source itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("api", "tracker", "cli", "webhooks")
# Client libraries of the servers and the web framework: adapters' and entrypoints' business.
IO_LIBRARIES = {"asyncpg", "aiokafka", "kafka", "faust", "mode", "fastapi", "starlette", "httpx"}


def imports(path: Path) -> list[tuple[str, bool]]:
    """Every module ``path`` imports, and whether the import runs only for type checking."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in typing_only) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) in typing_only))
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def top(module: str) -> str:
    return module.split(".")[0]


def test_the_domain_imports_nothing_outside_the_standard_library():
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sources("shared/domain")
        for module, _ in imports(path)
        if top(module) not in sys.stdlib_module_names
        and not module.startswith("shared.domain")
        and module != "__future__"
    ]
    assert offending == []


def test_the_service_layer_depends_on_ports_not_on_adapters_or_server_clients():
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sources("shared/service_layer")
        for module, typing_only in imports(path)
        if (module.startswith("shared.adapters") and not typing_only)
        or top(module) in IO_LIBRARIES
        or top(module) == "services"
    ]
    assert offending == []


def test_nothing_under_shared_imports_a_service():
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sources("shared")
        for module, _ in imports(path)
        if top(module) == "services"
    ]
    assert offending == []


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service: str):
    others = tuple(f"services.{other}" for other in SERVICES if other != service)
    offending = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sources(f"services/{service}")
        for module, _ in imports(path)
        if module.startswith(others) or module == "services"
    ]
    assert offending == []


def test_the_benchmarks_do_not_ship_in_the_production_package():
    assert not [path.name for path in sources("services") if path.stem.startswith("bench")]
