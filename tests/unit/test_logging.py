"""configure_logging: JSON lines; with a log file, the console keeps only what a person needs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from shared.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line]


def test_without_a_file_every_record_at_the_level_goes_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("api", "INFO")

    logging.getLogger("shared.x").debug("not this")
    logging.getLogger("shared.x").info("started", extra={"port": 8080})

    [record] = lines(capsys.readouterr().err)
    assert record["level"] == "info"
    assert record["service"] == "api"
    assert record["message"] == "started"
    assert record["port"] == 8080


def test_with_a_file_the_console_gets_warnings_and_the_file_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "logs" / "launcher.log"
    configure_logging("launcher", "INFO", console_level="WARNING", log_file=log_file)

    logging.getLogger("alembic.runtime.migration").info("Running upgrade")
    logging.getLogger("services.cli.launcher").warning("the API is slow")

    console = lines(capsys.readouterr().err)
    assert [(r["level"], r["message"]) for r in console] == [("warning", "the API is slow")]
    kept = lines(log_file.read_text())
    assert [(r["level"], r["message"]) for r in kept] == [
        ("info", "Running upgrade"),
        ("warning", "the API is slow"),
    ]


def test_configuring_again_closes_the_log_file_it_replaces(tmp_path: Path) -> None:
    configure_logging("launcher", log_file=tmp_path / "first.log")
    [first] = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]

    configure_logging("launcher", log_file=tmp_path / "second.log")

    assert first.stream is None  # closed


def test_an_unknown_level_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'LOUD'"):
        configure_logging("api", "LOUD")
