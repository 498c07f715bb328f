"""Transport subsidies from verified loops through the running system (PRODUCT.md, v1.1).

A closed loop pays its enterprise the rate of the worker's way of travel (the trip's bus,
train or flight, or self-arranged), per worker and per enterprise; nothing else pays. One
verified loop is one subsidy whatever the replays, duplicates or rebuilds, and a loop that
re-opens drops out of the ledger until it closes again. The ledger exports as CSV and XLSX
and a district's supervisor (or a gate) reads only its own.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from tests.support.api import (
    bearer,
    issue_token,
    post_accepted_scans,
    post_manifest,
    worker_ref_of,
)
from tests.support.journeys import PATIENCE, person_name, returnloop_cli, wait_for_view
from tests.support.processes import RunningSystem
from tests.support.scans import RECENT_START, recent_scan
from tests.support.servers import random_id_number, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
WORKER_COLUMNS = [
    "worker_ref",
    "id_masked",
    "name",
    "enterprise_id",
    "travel",
    "mode",
    "closed_at",
    "amount_yuan",
]
MODES = ("bus", "train", "flight")
REBUILD_TIMEOUT_S = 900.0


@dataclass
class Planted:
    """One worker of the world: how they travel and how their loop ends."""

    id_number: str
    name: str
    enterprise_id: str
    travel: str  # organised | self
    mode: str | None  # the trip's mode; None for self-arranged travel
    trip_id: str | None
    status: str  # the status the planted scans lead to
    scans: list[dict[str, Any]] = field(default_factory=list)
    worker_ref: str = ""

    @property
    def id_masked(self) -> str:
        return self.id_number[:6] + "********" + self.id_number[-4:]

    @property
    def checkin(self) -> dict[str, Any] | None:
        return next((s for s in self.scans if s["kind"] == "checkin"), None)


@dataclass(frozen=True)
class World:
    """Two enterprises in districts of their own, a trip of each mode, planted workers."""

    rates: dict[str, Decimal]
    districts: dict[str, str]  # enterprise_id -> district
    trips: dict[str, str]  # mode -> trip_id, and "other" -> a second bus
    workers: dict[str, Planted]  # what they stand for -> the worker

    @property
    def first(self) -> str:
        return next(iter(self.districts))

    @property
    def second(self) -> str:
        return list(self.districts)[1]

    def paid(self, enterprise_id: str) -> list[Planted]:
        return sorted(
            (w for w in self.workers.values() if w.enterprise_id == enterprise_id and w.status == "closed"),
            key=lambda w: w.worker_ref,
        )  # fmt: skip

    def rate(self, worker: Planted) -> Decimal:
        return self.rates["self" if worker.travel == "self" else str(worker.mode)]


def rates_of(system: RunningSystem) -> dict[str, Decimal]:
    """The rates the API process was started with (tests/e2e/conftest.py sets them)."""
    return {
        way: Decimal(system.env[f"RETURNLOOP_SUBSIDY_YUAN_{way.upper()}"])
        for way in (*MODES, "self")
    }


def journey(worker: Planted, *, ending: str) -> list[dict[str, Any]]:
    """The scans that lead ``worker`` to ``ending``: closed, in_transit, held, broken."""
    number = worker.id_number
    travelled = (
        [] if worker.travel == "self" else [recent_scan(1, "boarding", number, trip_id=worker.trip_id)]
    )  # fmt: skip
    arrival = recent_scan(2, "arrival_check", number)
    checkin = recent_scan(3, "checkin", number, enterprise_id=worker.enterprise_id)
    departure = recent_scan(0, "departure_check", number)
    if ending == "closed":
        return [departure, *travelled, arrival, checkin]
    if ending == "in_transit":
        return [departure, *travelled]
    if ending == "held":
        return [departure, *travelled, recent_scan(2, "arrival_check", number, temperature_c=38.4)]
    assert ending == "broken"
    return [departure, *travelled, checkin]  # checked in with no arrival recheck


PLAN = {
    # what the worker stands for: (enterprise 0 or 1, travel, mode, ending, then withdrawn)
    "bus": (0, "organised", "bus", "closed"),
    "train": (0, "organised", "train", "closed"),
    "flight": (0, "organised", "flight", "closed"),
    "self": (0, "self", None, "closed"),
    "in_transit": (0, "organised", "bus", "in_transit"),
    "held": (0, "organised", "flight", "held"),
    "broken": (0, "organised", "train", "broken"),
    "self_in_transit": (0, "self", None, "in_transit"),
    "withdrawn_after_closing": (0, "organised", "bus", "closed"),
    "second_train": (1, "organised", "train", "closed"),
    "second_bus": (1, "organised", "bus", "closed"),
}


def planted(worker: Planted) -> Any:
    """For ``wait_for_view``: every planted scan applied, the loop as planted."""
    kinds = {scan["kind"] for scan in worker.scans}
    return lambda view: (
        view["status_code"] == 200
        and set(view["checkpoints"]) == kinds
        and view["status"] == worker.status
    )


@pytest.fixture(scope="module")
async def world(system: RunningSystem) -> World:
    enterprises = [unique("E"), unique("E")]
    districts = {enterprises[0]: unique("乐清市"), enterprises[1]: unique("平阳县")}
    trips = {mode: unique("T") for mode in (*MODES, "other")}
    now = datetime.now(UTC)
    workers: dict[str, Planted] = {}
    for what, (index, travel, mode, ending) in PLAN.items():
        workers[what] = Planted(
            random_id_number(), person_name(), enterprises[index], travel, mode,
            trips[mode] if mode else None, "open" if ending == "in_transit" else ending,
        )  # fmt: skip
        workers[what].scans = journey(workers[what], ending=ending)
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(system.admin_token), timeout=30
    ) as admin:
        await post_manifest(
            admin,
            {
                "enterprises": [
                    {"enterprise_id": eid, "name": f"补贴{n}厂", "shortage": 5, "district": district}
                    for n, (eid, district) in enumerate(districts.items())
                ],
                "trips": [
                    {"trip_id": trip_id, "mode": "bus" if mode == "other" else mode,
                     "origin": "四川达州", "destination": "温州乐清",
                     "departs_at": (now - timedelta(hours=5)).isoformat(),
                     "eta": (now + timedelta(days=1)).isoformat()}
                    for mode, trip_id in trips.items()
                ],
                "workers": [
                    {"id_number": w.id_number, "name": w.name, "enterprise_id": w.enterprise_id,
                     **({"trip_id": w.trip_id} if w.trip_id else {"travel": "self"})}
                    for w in workers.values()
                ],
            },
        )  # fmt: skip
        await post_accepted_scans(admin, *(s for w in workers.values() for s in w.scans))
        for worker in workers.values():
            view = await wait_for_view(admin, worker.id_number, planted(worker),
                                       what=f"a {worker.status} loop")  # fmt: skip
            worker.worker_ref = view["worker_ref"]
        withdrawn = workers["withdrawn_after_closing"]
        response = await admin.post(
            f"/v1/workers/{withdrawn.worker_ref}/dispositions",
            json={"kind": "withdrawn", "note": "返乡照顾家人",
                  "at": (RECENT_START + timedelta(hours=3.5)).isoformat()},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        withdrawn.status = "withdrawn"
        await wait_for_view(
            admin, withdrawn.id_number, lambda v: v.get("status") == "withdrawn", what="withdrawn"
        )
    return World(rates_of(system), districts, trips, workers)


async def ledger(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/subsidies", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def expected_row(world: World, worker: Planted) -> dict[str, Any]:
    checkin = worker.checkin
    assert checkin is not None
    return {
        "worker_ref": worker.worker_ref,
        "id_masked": worker.id_masked,
        "name": worker.name,
        "enterprise_id": worker.enterprise_id,
        "travel": worker.travel,
        "mode": worker.mode,
        "closed_at": checkin["occurred_at"],
        "amount_yuan": float(world.rate(worker)),
    }


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``closed_at`` as a moment, so that equal instants compare equal."""
    return [
        {**row, "closed_at": datetime.fromisoformat(row["closed_at"]) if row["closed_at"] else None}
        for row in rows
    ]


# --- each rule of the ledger -----------------------------------------------------------


async def test_the_rates_are_the_configured_ones(admin: httpx.AsyncClient, world: World) -> None:
    body = await ledger(admin, enterprise_id=world.first)

    assert body["rates"] == {way: float(rate) for way, rate in world.rates.items()}
    assert world.rates == {
        "bus": Decimal(200), "train": Decimal(350), "flight": Decimal(800), "self": Decimal(150)
    }  # fmt: skip


async def test_closed_loops_pay_their_journeys_rate_per_worker_and_per_enterprise(
    admin: httpx.AsyncClient, world: World
) -> None:
    body = await ledger(admin, enterprise_id=world.first)

    paid = world.paid(world.first)
    assert sorted(w.mode or "self" for w in paid) == ["bus", "flight", "self", "train"]
    assert comparable(sorted(body["workers"], key=lambda r: r["worker_ref"])) == comparable(
        [expected_row(world, w) for w in paid]
    )
    assert body["enterprises"] == [
        {"enterprise_id": world.first, "workers": 4, "amount_yuan": 200.0 + 350 + 800 + 150}
    ]
    assert body["total_yuan"] == 1500.0


async def test_loops_that_are_not_closed_pay_nothing(
    admin: httpx.AsyncClient, world: World
) -> None:
    body = await ledger(admin)

    listed = {row["worker_ref"] for row in body["workers"]}
    unpaid = [w for w in world.workers.values() if w.status != "closed"]
    assert sorted(w.status for w in unpaid) == ["broken", "held", "open", "open", "withdrawn"]
    for worker in unpaid:
        view = (await admin.get(f"/v1/workers/{worker.worker_ref}")).json()
        assert view["status"] == worker.status
        assert worker.worker_ref not in listed, worker.status


async def test_the_whole_ledger_sums_per_enterprise_and_in_total(
    admin: httpx.AsyncClient, world: World
) -> None:
    body = await ledger(admin)

    per_enterprise = {row["enterprise_id"]: row for row in body["enterprises"]}
    assert per_enterprise[world.first] == {
        "enterprise_id": world.first, "workers": 4, "amount_yuan": 1500.0
    }  # fmt: skip
    assert per_enterprise[world.second] == {
        "enterprise_id": world.second, "workers": 2, "amount_yuan": 550.0
    }  # fmt: skip
    # One answer is one snapshot: its rows add up to its totals, whatever others run.
    for enterprise_id, row in per_enterprise.items():
        mine = [w for w in body["workers"] if w["enterprise_id"] == enterprise_id]
        assert row["workers"] == len(mine)
        assert row["amount_yuan"] == pytest.approx(sum(w["amount_yuan"] for w in mine))
    assert body["total_yuan"] == pytest.approx(sum(r["amount_yuan"] for r in body["enterprises"]))
    assert len({w["worker_ref"] for w in body["workers"]}) == len(body["workers"])


# --- one verified loop, one subsidy -----------------------------------------------------


async def test_one_verified_loop_is_one_subsidy_whatever_the_replays_duplicates_or_rebuilds(
    system: RunningSystem, admin: httpx.AsyncClient, world: World
) -> None:
    before = {eid: await ledger(admin, enterprise_id=eid) for eid in world.districts}
    closed = [w for w in world.workers.values() if w.status == "closed"]
    updated = {
        w.worker_ref: (await admin.get(f"/v1/workers/{w.worker_ref}")).json()["updated_at"]
        for w in closed
    }

    # Every scan of the world again (same scan_ids), twice over: all duplicates.
    replays = [s for w in world.workers.values() for s in w.scans]
    await post_accepted_scans(admin, *replays)
    await post_accepted_scans(admin, *replays)
    # Then a second check-in at the same gate (a new scan), half an hour before the first:
    # the loop it belongs to stays as it was. Scans of a worker and kind are applied in
    # order, so once it is applied the replays before it have been too.
    await post_accepted_scans(
        admin,
        *(recent_scan(2.5, "checkin", w.id_number, enterprise_id=w.enterprise_id) for w in closed),
    )
    for worker in closed:
        await eventually(
            lambda w=worker: admin.get(f"/v1/workers/{w.worker_ref}"),
            lambda response, w=worker: response.json()["updated_at"] != updated[w.worker_ref],
            what="the second check-in applied",
            within=PATIENCE,
        )
    after_replays = {eid: await ledger(admin, enterprise_id=eid) for eid in world.districts}

    # It re-decides every worker of the shared database, which may hold other suites' too.
    rebuilt = await asyncio.to_thread(returnloop_cli, system, "rebuild", timeout=REBUILD_TIMEOUT_S)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert "rebuilt" in rebuilt.stdout
    after_rebuild = {eid: await ledger(admin, enterprise_id=eid) for eid in world.districts}

    assert after_replays == before
    assert after_rebuild == before
    assert [before[eid]["total_yuan"] for eid in world.districts] == [1500.0, 550.0]


# --- a loop that re-opens drops out until it closes again -------------------------------


async def closed_worker(admin: httpx.AsyncClient, world: World) -> tuple[Planted, str]:
    """A new worker on the world's bus, of a new enterprise, whose loop has closed."""
    enterprise_id = unique("E")
    worker = Planted(
        random_id_number(), person_name(), enterprise_id, "organised", "bus",
        world.trips["bus"], "closed",
    )  # fmt: skip
    await post_manifest(
        admin,
        {
            "enterprises": [{"enterprise_id": enterprise_id, "name": "重开厂", "shortage": 1}],
            "workers": [{"id_number": worker.id_number, "name": worker.name,
                         "enterprise_id": enterprise_id, "trip_id": worker.trip_id}],
        },
    )  # fmt: skip
    worker.scans = journey(worker, ending="closed")
    await post_accepted_scans(admin, *worker.scans)
    await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "closed", what="closed"
    )
    worker.worker_ref = await worker_ref_of(admin, worker.id_number)
    body = await ledger(admin, enterprise_id=enterprise_id)
    assert [row["worker_ref"] for row in body["workers"]] == [worker.worker_ref]
    assert body["total_yuan"] == float(world.rates["bus"])
    return worker, enterprise_id


async def paid_refs(admin: httpx.AsyncClient, enterprise_id: str) -> list[str]:
    return [
        row["worker_ref"] for row in (await ledger(admin, enterprise_id=enterprise_id))["workers"]
    ]


async def test_a_late_check_in_at_the_wrong_enterprise_drops_the_worker_until_it_closes_again(
    admin: httpx.AsyncClient, world: World
) -> None:
    worker, enterprise_id = await closed_worker(admin, world)

    await post_accepted_scans(
        admin, recent_scan(3.5, "checkin", worker.id_number, enterprise_id=world.second)
    )
    broken = await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "broken", what="re-opened"
    )
    assert [a["kind"] for a in broken["alerts"] if a["open"]] == ["wrong_enterprise"]
    assert await paid_refs(admin, enterprise_id) == []
    assert (await ledger(admin, enterprise_id=enterprise_id))["enterprises"] == []

    closing = recent_scan(3.75, "checkin", worker.id_number, enterprise_id=enterprise_id)
    await post_accepted_scans(admin, closing)
    await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "closed", what="closed again"
    )
    (row,) = (await ledger(admin, enterprise_id=enterprise_id))["workers"]
    assert row["worker_ref"] == worker.worker_ref
    assert datetime.fromisoformat(row["closed_at"]) == datetime.fromisoformat(
        closing["occurred_at"]
    )
    assert row["amount_yuan"] == float(world.rates["bus"])


async def test_a_late_boarding_on_another_trip_drops_the_worker_until_it_closes_again(
    admin: httpx.AsyncClient, world: World
) -> None:
    worker, enterprise_id = await closed_worker(admin, world)

    await post_accepted_scans(
        admin, recent_scan(3.5, "boarding", worker.id_number, trip_id=world.trips["other"])
    )
    broken = await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "broken", what="re-opened"
    )
    assert [a["kind"] for a in broken["alerts"] if a["open"]] == ["trip_mismatch"]
    assert await paid_refs(admin, enterprise_id) == []

    await post_accepted_scans(
        admin, recent_scan(3.75, "boarding", worker.id_number, trip_id=worker.trip_id)
    )
    await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "closed", what="closed again"
    )
    assert await paid_refs(admin, enterprise_id) == [worker.worker_ref]


async def test_a_withdrawn_loop_drops_out_and_a_later_release_brings_it_back(
    admin: httpx.AsyncClient, world: World
) -> None:
    worker, enterprise_id = await closed_worker(admin, world)
    path = f"/v1/workers/{worker.worker_ref}/dispositions"

    def at(hours: float) -> str:
        return (RECENT_START + timedelta(hours=hours)).isoformat()

    withdrawn = await admin.post(path, json={"kind": "withdrawn", "note": "辞职", "at": at(3.5)})
    assert withdrawn.status_code == 201, withdrawn.text
    await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "withdrawn", what="withdrawn"
    )
    assert await paid_refs(admin, enterprise_id) == []

    released = await admin.post(path, json={"kind": "released", "note": "复工", "at": at(3.75)})
    assert released.status_code == 201, released.text
    await wait_for_view(
        admin, worker.id_number, lambda v: v.get("status") == "closed", what="closed again"
    )
    assert await paid_refs(admin, enterprise_id) == [worker.worker_ref]


# --- exports ----------------------------------------------------------------------------


async def test_the_ledger_as_csv_has_a_bom_the_json_columns_and_every_worker(
    admin: httpx.AsyncClient, world: World
) -> None:
    as_json = (await ledger(admin, enterprise_id=world.first))["workers"]

    response = await admin.get(
        "/v1/subsidies", params={"enterprise_id": world.first, "format": "csv"}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "text/csv"
    assert response.content.startswith(b"\xef\xbb\xbf"), "a BOM, so Excel reads UTF-8"
    assert "subsidies" in response.headers["content-disposition"]
    text = response.content.decode("utf-8-sig")
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert header == WORKER_COLUMNS
    assert len(rows) == len(as_json) == 4
    for row, shown in zip(rows, as_json, strict=True):
        cells = dict(zip(header, row, strict=True))
        assert cells["worker_ref"] == shown["worker_ref"]
        assert cells["id_masked"] == shown["id_masked"] and "********" in cells["id_masked"]
        assert cells["name"] == shown["name"]
        assert cells["mode"] == (shown["mode"] or "")
        assert float(cells["amount_yuan"]) == shown["amount_yuan"]
    for worker in world.workers.values():
        assert worker.id_number not in text


async def test_the_ledger_as_xlsx_opens_with_openpyxl_cell_by_cell(
    admin: httpx.AsyncClient, world: World
) -> None:
    as_json = (await ledger(admin, enterprise_id=world.first))["workers"]

    response = await admin.get(
        "/v1/subsidies", params={"enterprise_id": world.first, "format": "xlsx"}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    header, *rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert header == WORKER_COLUMNS
    assert rows == [
        [shown[column] for column in WORKER_COLUMNS] for shown in as_json
    ]  # numbers stay numbers, a missing mode an empty cell
    assert sum(row[-1] for row in rows) == 1500
    assert all(isinstance(row[-1], int | float) for row in rows)
    cells = {str(value) for row in rows for value in row}
    assert not {w.id_number for w in world.workers.values()} & cells


# --- who reads which ledger -------------------------------------------------------------


async def test_a_district_supervisor_reads_only_its_districts_ledger(
    system: RunningSystem, admin: httpx.AsyncClient, world: World
) -> None:
    token = await issue_token(admin, "supervisor", district=world.districts[world.first])
    async with httpx.AsyncClient(
        base_url=system.url, headers=bearer(token), timeout=30
    ) as supervisor:
        everything = await ledger(supervisor)
        theirs = await ledger(supervisor, enterprise_id=world.second)
        exported = await supervisor.get("/v1/subsidies", params={"format": "csv"})

    assert [row["enterprise_id"] for row in everything["enterprises"]] == [world.first]
    assert {row["enterprise_id"] for row in everything["workers"]} == {world.first}
    assert everything["total_yuan"] == 1500.0
    assert theirs == {**theirs, "total_yuan": 0.0, "enterprises": [], "workers": []}
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert sorted(row["worker_ref"] for row in rows) == sorted(
        w.worker_ref for w in world.paid(world.first)
    )


async def test_a_gate_reads_its_own_enterprises_ledger_only(
    system: RunningSystem, admin: httpx.AsyncClient, world: World
) -> None:
    token = await issue_token(admin, "gate", enterprise_id=world.second)
    async with httpx.AsyncClient(base_url=system.url, headers=bearer(token), timeout=30) as gate:
        own = await ledger(gate)
        other = await gate.get("/v1/subsidies", params={"enterprise_id": world.first})
        other_csv = await gate.get(
            "/v1/subsidies", params={"enterprise_id": world.first, "format": "csv"}
        )

    assert own["enterprises"] == [
        {"enterprise_id": world.second, "workers": 2, "amount_yuan": 550.0}
    ]
    assert {row["enterprise_id"] for row in own["workers"]} == {world.second}
    assert (other.status_code, other_csv.status_code) == (403, 403)
