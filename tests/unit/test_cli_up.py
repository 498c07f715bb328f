"""`returnloop up`'s arguments: a bare --demo is the small wave, a bad one a clear error."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import services.cli.launcher
import services.cli.main
from services.cli.main import cli


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``run_up`` was called with; nothing is started."""
    calls: list[dict[str, Any]] = []

    def run_up(settings: object, **options: Any) -> int:
        calls.append(options)
        return 0

    monkeypatch.setattr(services.cli.launcher, "run_up", run_up)
    monkeypatch.setattr(services.cli.main, "configure_logging", lambda *a, **k: None)
    return calls


@pytest.mark.parametrize(
    ("arguments", "demo", "exit_after_demo"),
    [
        ([], None, False),
        (["--demo"], "small", False),
        (["--demo", "--exit-after-demo"], "small", True),
        (["--exit-after-demo", "--demo"], "small", True),
        (["--demo", "--seed", "7"], "small", False),
        (["--demo", "small"], "small", False),
        (["--demo", "city", "--exit-after-demo"], "city", True),
        (["--demo=city"], "city", False),
    ],
)
def test_demo_waves(
    started: list[dict[str, Any]], arguments: list[str], demo: str | None, exit_after_demo: bool
) -> None:
    result = CliRunner().invoke(cli, ["up", *arguments])

    assert result.exit_code == 0, result.output
    assert [(call["demo"], call["exit_after_demo"]) for call in started] == [
        (demo, exit_after_demo)
    ]


def test_an_unknown_demo_wave_is_refused_by_name(started: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(cli, ["up", "--demo", "town"])

    assert result.exit_code == 2
    assert "--demo takes small or city" in result.output
    assert "'town'" in result.output
    assert started == []
