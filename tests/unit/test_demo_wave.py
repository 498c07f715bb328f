"""The demo waves: the seed's practice in them, and the contract's shapes for every body."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from services.api.routes.links import LinkIn
from services.api.routes.manifests import ManifestIn
from services.cli.demo import (
    DISTRICTS,
    OVERRIDE_REASON,
    PER_MILLE,
    WaveShape,
    build_wave,
    expected_states,
)
from shared.contract import parse_health_update, parse_scan
from shared.domain.model import Rules

NOW = datetime(2020, 3, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=[1, 2020])
def small(request: pytest.FixtureRequest):
    return build_wave("small", now=NOW, seed=request.param)


def test_the_small_wave_ends_the_same_whatever_the_seed(small) -> None:
    assert small.expected["status"] == {"closed": 289, "held": 6, "broken": 3, "open": 2}
    assert small.expected["open_alerts"] == {
        "fever_at_departure": 2,
        "code_not_green_at_departure": 3,
        "code_not_green_at_arrival": 1,
        "boarded_without_clearance": 1,
        "overdue_arrival": 2,
        "wrong_enterprise": 1,
    }
    # Never boarded a trip that left: the no-show, the two held with fever, the yellow
    # code and the stale platform colour.
    assert sum(map(len, small.expected["no_show"].values())) == 6


def test_every_body_is_what_the_contract_accepts(small) -> None:
    ManifestIn.model_validate(small.manifest)
    for link in small.links:
        LinkIn.model_validate(link)
    for update in small.updates:
        parse_health_update(update)
    for scan in small.scans:
        parse_scan(scan)


def test_most_scans_name_the_worker_by_a_linked_code(small) -> None:
    named = small.named_by()
    assert named["health_code"] > named["ssc_card"] > named["id_number"] > 0
    linked = {link["id_number"] for link in small.links}
    assert len(linked) > 0.9 * len(small.id_numbers)
    codes = {link[key] for link in small.links for key in ("health_code_id", "ssc_card_no")}
    assert {body["code"] for body in (*small.scans, *small.updates) if "code" in body} <= codes
    assert any(code.startswith("https://") for code in codes)  # a URL-shaped health code


def test_self_drivers_have_no_trip_and_never_board(small) -> None:
    drivers = {w["id_number"]: w for w in small.manifest["workers"] if w.get("travel") == "self"}
    assert len(drivers) == 9 and all("trip_id" not in w for w in drivers.values())
    assert any("expected_arrival" in w for w in drivers.values())
    assert not [
        s for s in small.scans if s["kind"] == "boarding" and small.id_number_of(s) in drivers
    ]
    states = expected_states(small, now=NOW, rules=Rules())
    ended = Counter(states[number].status.value for number in drivers)
    assert ended == {"closed": 8, "broken": 1}
    (overdue,) = small.planted["self_overdue"]
    assert {a.kind.value for a in states[overdue].alerts if a.open} == {"overdue_arrival"}


def test_platform_colours_pass_checks_and_stale_or_missing_ones_do_not(small) -> None:
    states = expected_states(small, now=NOW, rules=Rules())
    for number in small.planted["platform_green"]:
        checkpoint = states[number].checkpoints
        assert states[number].status.value == "closed"
        assert {
            checkpoint[k].health_code_source.value for k in checkpoint if k.value.endswith("check")
        } == {"platform"}
    (stale,) = small.planted["colour_stale_held"]
    assert states[stale].status.value == "held"
    (missing,) = small.planted["colour_missing_recovers"]
    assert states[missing].status.value == "closed"
    assert any(a.kind.value == "code_not_green_at_arrival" for a in states[missing].alerts)


def test_an_override_boarding_is_recorded_for_a_held_worker(small) -> None:
    (number,) = small.planted["override_boarding"]
    state = expected_states(small, now=NOW, rules=Rules())[number]
    assert state.status.value == "held"
    boarding = next(c for k, c in state.checkpoints.items() if k.value == "boarding")
    assert boarding.override_reason == OVERRIDE_REASON and not boarding.passed


def test_enterprises_sit_in_the_bulletins_districts_with_open_positions(small) -> None:
    names = {d.name for d in DISTRICTS}
    enterprises = small.manifest["enterprises"]
    assert {e["district"] for e in enterprises} == names  # 12 enterprises: every district
    assert all(0 <= e["open_positions"] <= e["shortage"] for e in enterprises)
    assert {t["destination"].removeprefix("温州市") for t in small.manifest["trips"]} <= names


def test_naming_workers_by_id_number_instead_changes_no_loop() -> None:
    # What the feed does for a worker whose link is refused.
    wave = build_wave("small", now=NOW, seed=7)
    wave.by_id_number_only(set(wave.id_numbers))
    assert wave.links == [] and all("code" not in s for s in (*wave.scans, *wave.updates))
    again = build_wave("small", now=NOW, seed=7)
    assert expected_states(wave, now=NOW, rules=Rules()) == expected_states(
        again, now=NOW, rules=Rules()
    )


def test_a_shorter_colour_age_is_folded_into_the_prediction() -> None:
    # The oracle reads the configured maximum age: with two hours, the platform's
    # colours from before departure are too old at arrival for most of them.
    strict = build_wave(
        "small", now=NOW, seed=3, rules=Rules(health_code_max_age=timedelta(hours=2))
    )
    assert strict.expected["status"]["held"] > 6


def test_a_city_shaped_wave_plants_each_case_per_mille() -> None:
    shape = WaveShape(workers=3_000, buses=105, trains=1, flights=1, enterprises=30)
    wave = build_wave("city", now=NOW, seed=11, shape=shape)
    assert wave.exceptions == {kind: 3 * rate for kind, rate in PER_MILLE.items()}
    assert sum(wave.expected["status"].values()) == 3_000
    travel = Counter(w.get("travel", "organised") for w in wave.manifest["workers"])
    assert travel == {"organised": 3_000 - 93, "self": 93}
