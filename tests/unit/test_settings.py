"""Settings: defaults from PRODUCT.md, RETURNLOOP_* variables, refused secrets, the worker_ref key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings, SettingsError, resolve_worker_ref_key

REAL_KEY = "a-real-worker-ref-key-of-32-chars"


@pytest.fixture(autouse=True)
def no_returnloop_variables(monkeypatch):
    """Each test sees only the RETURNLOOP_* variables it sets itself."""
    for name in list(os.environ):
        if name.upper().startswith("RETURNLOOP_"):
            monkeypatch.delenv(name)


def test_the_defaults_are_the_ones_the_product_brief_names():
    settings = Settings()

    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8080)
    assert settings.fever_threshold_c == 37.3
    assert settings.arrival_grace_hours == 2
    assert settings.checkin_window_hours == 24
    assert settings.sweep_interval_seconds == 30
    assert settings.admin_token is None
    assert settings.kafka_bootstrap is None
    assert settings.database_url is None


def test_settings_are_read_from_returnloop_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("RETURNLOOP_API_HOST", "0.0.0.0")
    monkeypatch.setenv("RETURNLOOP_API_PORT", "9090")
    monkeypatch.setenv("RETURNLOOP_ADMIN_TOKEN", "s3cr3t-admin-token")
    monkeypatch.setenv("RETURNLOOP_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("RETURNLOOP_DATABASE_URL", "postgresql://returnloop@db/returnloop")
    monkeypatch.setenv("RETURNLOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RETURNLOOP_FEVER_THRESHOLD_C", "37.5")
    monkeypatch.setenv("RETURNLOOP_ARRIVAL_GRACE_HOURS", "3")
    monkeypatch.setenv("RETURNLOOP_CHECKIN_WINDOW_HOURS", "12")
    monkeypatch.setenv("RETURNLOOP_SWEEP_INTERVAL_SECONDS", "5")

    settings = Settings()

    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 9090)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cr3t-admin-token"
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.database_url == "postgresql://returnloop@db/returnloop"
    assert settings.data_dir == tmp_path
    assert settings.fever_threshold_c == 37.5
    assert settings.arrival_grace_hours == 3
    assert settings.checkin_window_hours == 12
    assert settings.sweep_interval_seconds == 5


def test_the_admin_token_is_not_shown_when_settings_are_printed(monkeypatch):
    monkeypatch.setenv("RETURNLOOP_ADMIN_TOKEN", "s3cr3t-admin-token")

    settings = Settings()

    assert "s3cr3t-admin-token" not in repr(settings)
    assert "s3cr3t-admin-token" not in str(settings)


@pytest.mark.parametrize("placeholder", ["changeme", "CHANGEME", " changeme ", "secret"])
def test_a_placeholder_admin_token_is_refused_with_a_clear_error(monkeypatch, placeholder):
    monkeypatch.setenv("RETURNLOOP_ADMIN_TOKEN", placeholder)

    with pytest.raises(ValidationError) as refused:
        Settings()

    assert "admin_token" in str(refused.value)
    assert "placeholder" in str(refused.value)


def test_a_placeholder_worker_ref_key_is_refused():
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(worker_ref_key="changeme")


def test_a_port_outside_0_to_65535_is_refused(monkeypatch):
    monkeypatch.setenv("RETURNLOOP_API_PORT", "70000")

    with pytest.raises(ValidationError, match="api_port"):
        Settings()


# --- embedded or real servers --------------------------------------------------------------


def test_with_no_servers_configured_the_embedded_ones_are_used():
    assert Settings().embedded is True


@pytest.mark.parametrize(
    "servers",
    [
        {"kafka_bootstrap": "kafka:9092"},
        {"database_url": "postgresql://returnloop@db/returnloop"},
        {"kafka_bootstrap": "kafka:9092", "database_url": "postgresql://returnloop@db/returnloop"},
    ],
    ids=["kafka", "postgres", "both"],
)
def test_with_any_real_server_configured_nothing_is_embedded(servers):
    assert Settings(**servers).embedded is False


# --- the worker_ref key --------------------------------------------------------------------


@pytest.mark.parametrize(
    "servers",
    [
        {"kafka_bootstrap": "kafka:9092"},
        {"database_url": "postgresql://returnloop@db/returnloop"},
    ],
    ids=["kafka", "postgres"],
)
def test_real_servers_without_a_worker_ref_key_fail_naming_the_variable(servers, tmp_path):
    settings = Settings(data_dir=tmp_path, **servers)

    with pytest.raises(SettingsError, match="RETURNLOOP_WORKER_REF_KEY"):
        resolve_worker_ref_key(settings)
    assert list(tmp_path.iterdir()) == []


def test_a_configured_worker_ref_key_is_used_as_it_is(monkeypatch):
    monkeypatch.setenv("RETURNLOOP_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("RETURNLOOP_WORKER_REF_KEY", REAL_KEY)

    assert resolve_worker_ref_key(Settings()) == REAL_KEY.encode()


def test_a_worker_ref_key_shorter_than_16_characters_is_refused():
    settings = Settings(kafka_bootstrap="kafka:9092", worker_ref_key="too-short-key")

    with pytest.raises(SettingsError, match="RETURNLOOP_WORKER_REF_KEY"):
        resolve_worker_ref_key(settings)


def test_a_short_worker_ref_key_is_refused_even_when_embedded(tmp_path):
    settings = Settings(data_dir=tmp_path, worker_ref_key="0123456789abcde")

    with pytest.raises(SettingsError, match="at least 16"):
        resolve_worker_ref_key(settings)


def test_the_embedded_default_keeps_a_private_key_file_in_the_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)

    key = resolve_worker_ref_key(settings)

    key_files = list(data_dir.iterdir())
    assert len(key_files) == 1
    assert stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    assert len(key) >= 16
    assert key_files[0].read_bytes().strip() == key


def test_the_embedded_default_reuses_its_key_file_on_the_next_start(tmp_path):
    first = resolve_worker_ref_key(Settings(data_dir=tmp_path))

    second = resolve_worker_ref_key(Settings(data_dir=tmp_path))

    assert second == first
    assert len(list(tmp_path.iterdir())) == 1


def test_two_data_dirs_get_two_different_keys(tmp_path):
    one = resolve_worker_ref_key(Settings(data_dir=tmp_path / "one"))
    other = resolve_worker_ref_key(Settings(data_dir=tmp_path / "other"))

    assert one != other


def test_a_configured_key_wins_over_the_embedded_key_file(tmp_path):
    key = resolve_worker_ref_key(Settings(data_dir=tmp_path, worker_ref_key=REAL_KEY))

    assert key == REAL_KEY.encode()
    assert not any(Path(tmp_path).iterdir())


def test_the_daily_tick_off_counts_days_in_asia_shanghai_unless_told_otherwise(monkeypatch):
    assert Settings().timezone == "Asia/Shanghai"
    monkeypatch.setenv("RETURNLOOP_TIMEZONE", "UTC")
    assert str(Settings().zone) == "UTC"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../etc/passwd", ""])
def test_a_time_zone_that_is_not_an_iana_name_is_refused(monkeypatch, zone):
    monkeypatch.setenv("RETURNLOOP_TIMEZONE", zone)
    with pytest.raises(ValidationError, match=r"RETURNLOOP_TIMEZONE|timezone"):
        Settings()
