"""The demo waves: the seed's practice in them, and the contract's shapes for every body."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.api.routes.dispositions import DispositionIn
from services.api.routes.links import LinkIn
from services.api.routes.manifests import ManifestIn
from services.cli.demo import (
    DEMO_SUBSIDY_YUAN,
    DISTRICTS,
    OVERRIDE_REASON,
    PER_MILLE,
    WaveShape,
    build_wave,
    expected_states,
)
from services.cli.launcher import demo_subsidy_settings
from shared.contract import parse_health_update, parse_scan
from shared.domain.model import Rules
from shared.domain.subsidies import SubsidyRates
from shared.settings import Settings, subsidy_rates_from

NOW = datetime(2020, 3, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=[1, 2020])
def small(request: pytest.FixtureRequest):
    return build_wave("small", now=NOW, seed=request.param)


def test_the_small_wave_ends_the_same_whatever_the_seed(small) -> None:
    assert small.expected["status"] == {
        "closed": 285,
        "held": 6,
        "broken": 3,
        "open": 3,
        "withdrawn": 3,
    }
    assert small.expected["open_alerts"] == {
        "fever_at_departure": 2,
        "code_not_green_at_departure": 3,
        "code_not_green_at_arrival": 1,
        "boarded_without_clearance": 1,
        "overdue_arrival": 2,
        "wrong_enterprise": 1,
    }
    # Never boarded a trip that left: the no-show, the two held with fever, the yellow
    # code, the stale platform colour, the one released after the bus left, and the three
    # who stay home.
    assert sum(map(len, small.expected["no_show"].values())) == 10
    # Closed loops only, at the demo's rates: 277 by bus, 8 driving themselves.
    assert small.expected["subsidies"]["total_yuan"] == 277 * 200 + 8 * 150
    assert small.expected["subsidies"]["workers"] == 285


def test_every_body_is_what_the_contract_accepts(small) -> None:
    ManifestIn.model_validate(small.manifest)
    for link in small.links:
        LinkIn.model_validate(link)
    for update in small.updates:
        parse_health_update(update)
    for scan in small.scans:
        parse_scan(scan)
    for body in small.dispositions:
        DispositionIn.model_validate({k: v for k, v in body.items() if k != "id_number"})


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


def _kinds_of(wave, number: str) -> list[str]:
    return [
        d["kind"]
        for d in sorted(wave.dispositions, key=lambda d: d["at"])
        if d["id_number"] == number
    ]


def test_dispositions_follow_the_failed_checks_in_event_time(small) -> None:
    states = expected_states(small, now=NOW, rules=Rules())
    scans: dict[str, list[datetime]] = {}
    for body in small.scans:
        scans.setdefault(small.id_number_of(body), []).append(
            datetime.fromisoformat(body["occurred_at"])
        )
    for body in small.dispositions:
        at = datetime.fromisoformat(body["at"])
        assert at < NOW
        # After the check it answers (none is recorded for a worker never scanned but the
        # ones who stay home).
        assert body["kind"] == "withdrawn" or min(scans[body["id_number"]]) < at
    at_instants = Counter((d["id_number"], d["at"]) for d in small.dispositions)
    assert max(at_instants.values()) == 1  # never two for a worker at one instant

    # Held with fever: one isolated, one not; both still held.
    isolated, plain = small.planted["fever_held"]
    assert _kinds_of(small, isolated) == ["isolation"] and _kinds_of(small, plain) == []
    assert states[isolated].status.value == states[plain].status.value == "held"
    (red,) = small.planted["red_at_arrival"]
    assert _kinds_of(small, red) == ["medical_observation"]
    assert states[red].status.value == "held"


def test_released_after_a_retest_with_or_without_a_later_check(small) -> None:
    states = expected_states(small, now=NOW, rules=Rules())
    # At the station: observed, released, rechecked, checked in: a closed loop.
    (number,) = small.planted["released_at_arrival"]
    assert _kinds_of(small, number) == ["medical_observation", "released"]
    state = states[number]
    assert (state.stage.value, state.status.value) == ("checked_in", "closed")
    (fever,) = [a for a in state.alerts if a.kind.value == "fever_at_arrival"]
    released_at = next(d.at for d in state.dispositions if d.kind.value == "released")
    assert not fever.open and fever.closed_at == released_at
    # At departure: released after the bus left; no alert, no journey, a no-show.
    (number,) = small.planted["released_at_departure"]
    state = states[number]
    assert _kinds_of(small, number) == ["medical_observation", "released"]
    assert (state.stage.value, state.status.value, state.open_alerts) == (
        "registered",
        "open",
        frozenset(),
    )
    assert any(number in listed for listed in small.expected["no_show"].values())


def test_an_upheld_appeal_closes_the_colour_alert_and_the_loop(small) -> None:
    (number,) = small.planted["appeal_upheld"]
    state = expected_states(small, now=NOW, rules=Rules())[number]
    assert _kinds_of(small, number) == ["code_appeal_upheld"]
    assert state.status.value == "closed"
    (alert,) = [a for a in state.alerts if a.kind.value == "code_not_green_at_arrival"]
    assert not alert.open and alert.closed_at == state.dispositions[0].at


def test_workers_who_stay_home_are_withdrawn_with_no_open_alert(small) -> None:
    states = expected_states(small, now=NOW, rules=Rules())
    withdrawn = [*small.planted["withdrawn_at_home"], *small.planted["fever_withdrawn"]]
    assert len(withdrawn) == 3
    for number in withdrawn:
        assert _kinds_of(small, number) == ["withdrawn"]
        assert states[number].status.value == "withdrawn" and not states[number].open_alerts
    (fevered,) = small.planted["fever_withdrawn"]
    assert [a.kind.value for a in states[fevered].alerts] == ["fever_at_departure"]


def test_the_ledger_pays_each_closed_loop_at_its_way_of_travel() -> None:
    shape = WaveShape(workers=3_000, buses=100, trains=2, flights=3, enterprises=30)
    rates = SubsidyRates(Decimal(200), Decimal(350), Decimal(800), Decimal(150))
    wave = build_wave("city", now=NOW, seed=13, shape=shape, rates=rates)
    states = expected_states(wave, now=NOW, rules=Rules())
    modes = {t["trip_id"]: t["mode"] for t in wave.manifest["trips"]}
    per_enterprise: dict[str, tuple[int, Decimal]] = {}
    for worker in wave.manifest["workers"]:
        if states[worker["id_number"]].status.value != "closed":
            continue
        way = worker.get("travel") or modes[worker["trip_id"]]
        count, amount = per_enterprise.get(worker["enterprise_id"], (0, Decimal(0)))
        per_enterprise[worker["enterprise_id"]] = (count + 1, amount + getattr(rates, way))
    ledger = wave.expected["subsidies"]
    assert ledger["enterprises"] == per_enterprise
    assert ledger["workers"] == wave.expected["status"]["closed"]
    assert ledger["total_yuan"] == sum(amount for _, amount in per_enterprise.values())
    assert {modes[w["trip_id"]] for w in wave.manifest["workers"] if "trip_id" in w} == {
        "bus",
        "train",
        "flight",
    }
    # Withdrawn, held, broken and open loops earn nothing; no rates, no money.
    free = build_wave("city", now=NOW, seed=13, shape=shape, rates=SubsidyRates())
    assert free.expected["subsidies"]["total_yuan"] == 0
    assert free.expected["subsidies"]["workers"] == ledger["workers"]


def test_a_demo_runs_with_the_demo_rates_unless_the_operator_set_some(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for way in DEMO_SUBSIDY_YUAN:
        monkeypatch.delenv(f"RETURNLOOP_SUBSIDY_YUAN_{way.upper()}", raising=False)
    monkeypatch.setenv("RETURNLOOP_SUBSIDY_YUAN_TRAIN", "420")
    settings, env = demo_subsidy_settings(Settings())
    assert env == {
        "RETURNLOOP_SUBSIDY_YUAN_BUS": "200",
        "RETURNLOOP_SUBSIDY_YUAN_FLIGHT": "800",
        "RETURNLOOP_SUBSIDY_YUAN_SELF": "150",
    }
    assert subsidy_rates_from(settings) == SubsidyRates(
        Decimal(200), Decimal(420), Decimal(800), Decimal(150)
    )
