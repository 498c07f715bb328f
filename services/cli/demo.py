"""Demo waves shaped like Wenzhou's return wave of early March 2020.

The city bulletin counts 1,034 chartered buses, 8 special trains and 5 flights
bringing 29,400 workers back to enterprises in Lucheng, Ouhai, Yueqing,
Rui'an, Yongjia and the development zone, from Guizhou, Yunnan, Hunan,
Sichuan, Jiangxi and other provinces. ``build_wave`` makes such a wave (small
or city-sized) with realistic exceptions, and says what each loop should end
as: the pure domain folded over the same scans is the oracle.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.domain.model import Assignment, Rules, Scan, decide
from shared.domain.vocabulary import HealthCode, Kind
from shared.identity import check_digit

DISTRICTS = ["鹿城区", "瓯海区", "龙湾区", "乐清市", "瑞安市", "永嘉县", "经开区"]
# Origin cities with the first six digits of their residents' ID numbers.
ORIGINS = [
    ("贵州省毕节市", "520502"),
    ("贵州省遵义市", "520302"),
    ("云南省昭通市", "530602"),
    ("湖南省邵阳市", "430502"),
    ("四川省遂宁市", "510903"),
    ("四川省南充市", "511302"),
    ("江西省上饶市", "361102"),
    ("江西省赣州市", "360702"),
    ("河南省信阳市", "411502"),
    ("安徽省阜阳市", "341202"),
    ("重庆市万州区", "500101"),
    ("广西壮族自治区百色市", "451002"),
]
TRADES = ["鞋业", "服装", "电气", "泵阀", "汽摩配件", "眼镜", "印刷包装", "锁具", "食品"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何罗高林"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"


@dataclass(frozen=True)
class WaveShape:
    workers: int
    buses: int
    trains: int
    flights: int
    enterprises: int


SHAPES = {
    "small": WaveShape(workers=300, buses=6, trains=0, flights=0, enterprises=12),
    "city": WaveShape(workers=29_400, buses=1_034, trains=8, flights=5, enterprises=300),
}


@dataclass
class Wave:
    """A manifest, the scans in delivery order, and what every loop should end as."""

    manifest: dict[str, Any]
    scans: list[dict[str, Any]]
    id_numbers: list[str]
    expected: dict[str, Any] = field(default_factory=dict)
    exceptions: Counter[str] = field(default_factory=Counter)


def _id_number(rng: random.Random, area: str) -> str:
    # Any county of the origin city, any birth date in 43 years, any serial: waves
    # with other seeds sharing one database practically never draw the same person.
    county = f"{area[:4]}{rng.randrange(1, 31):02d}"
    born = datetime(1960, 1, 1) + timedelta(days=rng.randrange(0, 365 * 43))
    first17 = f"{county}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + check_digit(first17)


_CST = timezone(timedelta(hours=8))


def _ts(moment: datetime) -> str:
    # Scanners send local time with its offset, as the contract allows.
    return moment.astimezone(_CST).isoformat()


def build_wave(
    size: str,
    *,
    now: datetime,
    seed: int = 2020,
    rules: Rules | None = None,
    shape: WaveShape | None = None,
) -> Wave:
    """A wave of ``size`` (small or city) whose events lie in the hours before ``now``.

    ``shape`` overrides the size's numbers (the benchmark's waves of any size).
    """
    shape = shape or SHAPES[size]
    rng = random.Random(seed)
    run = rng.randrange(16**6)
    enterprises = [
        {
            "enterprise_id": f"E{run % 10000:04d}-{index:03d}",
            "name": f"{rng.choice(DISTRICTS)}{rng.choice(TRADES)}第{index}厂",
            "shortage": rng.randrange(5, 120),
        }
        for index in range(1, shape.enterprises + 1)
    ]
    vehicles = (
        [("bus", 50)] * shape.buses
        + [("train", 600)] * shape.trains
        + [("flight", 180)] * shape.flights
    )
    trips = []
    for index, (mode, _) in enumerate(vehicles, start=1):
        origin, _area = ORIGINS[index % len(ORIGINS)]
        hours = {"bus": 14, "train": 10, "flight": 3}[mode]
        departs = now - timedelta(hours=hours + 4, minutes=rng.randrange(0, 90))
        trips.append(
            {
                "trip_id": f"{mode[0].upper()}{run:06x}-{index:04d}",
                "mode": mode,
                "origin": origin,
                "destination": "温州市" + rng.choice(DISTRICTS),
                "departs_at": departs.isoformat(),
                "eta": (departs + timedelta(hours=hours)).isoformat(),
            }
        )
    capacity = [cap for _, cap in vehicles]
    total_capacity = sum(capacity)
    workers, id_numbers, scans_by_worker = [], [], []
    exceptions: Counter[str] = Counter()
    # Exceptions, spread through the wave: roughly as often as a real wave saw them.
    per_mille = {
        "fever_recovers": 8,
        "fever_held": 6,
        "code_yellow": 4,
        "red_at_arrival": 4,
        "fever_at_arrival_recovers": 4,
        "no_show": 5,
        "lost_in_transit": 3,
        "wrong_gate": 5,
    }
    if size == "small":
        plan = [
            "fever_recovers",
            "fever_recovers",
            "fever_held",
            "fever_held",
            "code_yellow",
            "red_at_arrival",
            "fever_at_arrival_recovers",
            "no_show",
            "lost_in_transit",
            "wrong_gate",
        ]
    else:
        plan = [
            kind for kind, rate in per_mille.items() for _ in range(shape.workers * rate // 1000)
        ]
    slots = rng.sample(range(shape.workers), len(plan))
    exception_of = dict(zip(slots, plan, strict=True))
    trip_index, seat = 0, 0
    used_ids: set[str] = set()
    for index in range(shape.workers):
        trip = trips[trip_index]
        seat += 1
        if (
            seat >= capacity[trip_index] * shape.workers / total_capacity
            and trip_index < len(trips) - 1
        ):
            trip_index, seat = trip_index + 1, 0
        area = next(area for origin, area in ORIGINS if origin == trip["origin"])
        id_number = _id_number(rng, area)
        while id_number in used_ids:
            id_number = _id_number(rng, area)
        used_ids.add(id_number)
        enterprise = enterprises[rng.randrange(len(enterprises))]
        workers.append(
            {
                "id_number": id_number,
                "name": rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2)),
                "enterprise_id": enterprise["enterprise_id"],
                "trip_id": trip["trip_id"],
            }
        )
        id_numbers.append(id_number)
        kind = exception_of.get(index)
        if kind:
            exceptions[kind] += 1
        scans_by_worker.append(
            _journey(rng, f"{run:06x}-{index:05d}", id_number, trip, enterprise, enterprises, kind)
        )
    deliveries = _deliver(rng, scans_by_worker)
    wave = Wave(
        manifest={"enterprises": enterprises, "trips": trips, "workers": workers},
        scans=deliveries,
        id_numbers=id_numbers,
        exceptions=exceptions,
    )
    wave.expected = expected_outcome(wave, now=now, rules=rules or Rules())
    return wave


def _journey(
    rng: random.Random,
    prefix: str,
    id_number: str,
    trip: dict[str, Any],
    enterprise: dict[str, Any],
    enterprises: list[dict[str, Any]],
    exception: str | None,
) -> list[dict[str, Any]]:
    departs = datetime.fromisoformat(trip["departs_at"])
    eta = datetime.fromisoformat(trip["eta"])
    team = f"{trip['origin']}招工组"
    scans: list[dict[str, Any]] = []

    def scan(kind: str, at: datetime, **fields: Any) -> None:
        scans.append(
            {
                "scan_id": f"{prefix}-{len(scans)}",
                "kind": kind,
                "id_number": id_number,
                "occurred_at": _ts(at),
                **fields,
            }
        )

    def temperature() -> float:
        return round(rng.uniform(36.0, 37.1), 1)

    if exception == "no_show":
        return scans
    check_at = departs - timedelta(minutes=rng.randrange(45, 120))
    if exception in ("fever_recovers", "fever_held"):
        scan(
            "departure_check",
            check_at,
            station=team,
            temperature_c=round(rng.uniform(37.4, 38.6), 1),
            health_code="green",
        )
        if exception == "fever_held":
            return scans
        check_at += timedelta(minutes=20)
    if exception == "code_yellow":
        scan(
            "departure_check",
            check_at,
            station=team,
            temperature_c=temperature(),
            health_code="yellow",
        )
        return scans
    scan(
        "departure_check", check_at, station=team, temperature_c=temperature(), health_code="green"
    )
    board_at = departs - timedelta(minutes=rng.randrange(1, 15))
    scan("boarding", board_at, station=f"{trip['trip_id']} 车门", trip_id=trip["trip_id"])
    if exception == "lost_in_transit":
        return scans
    arrive_at = eta + timedelta(minutes=rng.randrange(0, 30))
    station = f"{trip['destination']}健康服务站"
    if exception == "red_at_arrival":
        scan(
            "arrival_check",
            arrive_at,
            station=station,
            temperature_c=temperature(),
            health_code="red",
        )
        return scans
    if exception == "fever_at_arrival_recovers":
        scan("arrival_check", arrive_at, station=station, temperature_c=37.6, health_code="green")
        arrive_at += timedelta(minutes=30)
    scan(
        "arrival_check",
        arrive_at,
        station=station,
        temperature_c=temperature(),
        health_code="green",
    )
    gate_at = arrive_at + timedelta(minutes=rng.randrange(30, 120))
    target = enterprise
    if exception == "wrong_gate":
        target = next(e for e in enterprises if e is not enterprise)
    scan("checkin", gate_at, station=f"{target['name']}门岗", enterprise_id=target["enterprise_id"])
    return scans


def _deliver(rng: random.Random, journeys: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Event-time order, then what networks do: ~10 % duplicates, ~5 % out of order."""
    ordered = sorted(
        (scan for journey in journeys for scan in journey), key=lambda s: s["occurred_at"]
    )
    delivered: list[dict[str, Any]] = []
    for scan in ordered:
        delivered.append(scan)
        if rng.random() < 0.10:
            delivered.insert(rng.randrange(len(delivered) - 1, len(delivered) + 1), dict(scan))
    for _ in range(len(delivered) // 20):
        a = rng.randrange(len(delivered))
        b = min(len(delivered) - 1, a + rng.randrange(1, 400))
        delivered[a], delivered[b] = delivered[b], delivered[a]
    return delivered


def to_domain_scan(body: dict[str, Any]) -> Scan:
    return Scan(
        scan_id=body["scan_id"],
        kind=Kind(body["kind"]),
        occurred_at=datetime.fromisoformat(body["occurred_at"]),
        station=body["station"],
        temperature_c=body.get("temperature_c"),
        health_code=HealthCode(body["health_code"]) if body.get("health_code") else None,
        trip_id=body.get("trip_id"),
        enterprise_id=body.get("enterprise_id"),
    )


def expected_outcome(wave: Wave, *, now: datetime, rules: Rules) -> dict[str, Any]:
    """Fold each worker's scans with the pure domain: the counts the system must reach."""
    etas = {t["trip_id"]: datetime.fromisoformat(t["eta"]) for t in wave.manifest["trips"]}
    by_id: dict[str, list[Scan]] = {}
    for body in wave.scans:
        by_id.setdefault(body["id_number"], []).append(to_domain_scan(body))
    statuses: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    alerts: Counter[str] = Counter()
    per_worker: dict[str, str] = {}
    for worker in wave.manifest["workers"]:
        state = decide(
            by_id.get(worker["id_number"], ()),
            now=now,
            assignment=Assignment(worker["enterprise_id"], worker["trip_id"]),
            trip_etas=etas,
            rules=rules,
        )
        statuses[state.status.value] += 1
        stages[state.stage.value] += 1
        per_worker[worker["id_number"]] = state.status.value
        for kind in state.open_alerts:
            alerts[kind.value] += 1
    return {
        "status": dict(statuses),
        "stage": dict(stages),
        "open_alerts": dict(alerts),
        "per_worker": per_worker,
    }
