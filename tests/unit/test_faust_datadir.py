"""The Faust worker keeps its files under RETURNLOOP_DATA_DIR, whatever the start directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.tracker.app import create_faust_app
from services.tracker.main import TrackerProcess
from shared.settings import Settings


def test_the_faust_working_directory_lives_under_the_data_dir_and_its_parent_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "not" / "there" / "yet"
    elsewhere = tmp_path / "start"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = Settings(
        kafka_bootstrap="127.0.0.1:9",
        database_url="postgresql://nobody@127.0.0.1:9/none",
        data_dir=data_dir,
        worker_ref_key="k" * 64,
    )

    app = create_faust_app(settings, TrackerProcess(settings))

    assert Path(app.conf.datadir) == data_dir.resolve() / "faust"
    assert data_dir.is_dir()
    assert list(elsewhere.iterdir()) == []
