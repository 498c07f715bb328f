"""Demo waves shaped like Wenzhou's return wave of early March 2020.

The city's bulletin (人力社保信息 no. 110, 3 March 2020) counts 1,034 chartered
buses, 8 special trains and 5 flights bringing 29,400 workers back to
enterprises in 瓯海, 瑞安, 经开区, 鹿城, 乐清 and 永嘉, from Guizhou, Yunnan, Hunan,
Sichuan, Jiangxi, Anhui and other provinces; some drove back on their own.
Workers show their health code (linked to the electronic social-security card,
"either code, one person") rather than an ID card, and checks may go by the
colour the health-code platform reports. ``build_wave`` makes such a wave
(small or city-sized) with realistic exceptions, and says what each loop should
end as: the pure domain folded over the same scans and colour updates is the
oracle.

After the failed checks come dispositions, as health stations record them: some held
with fever are isolated or put under medical observation, some are released after a
negative retest (and rechecked, or not), a wrongly assigned colour is appealed and
the appeal upheld, and some workers stay home (withdrawn). Closed loops earn their
enterprise a transport subsidy at the demo's rates (``DEMO_SUBSIDY_YUAN``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from shared.domain.model import (
    Assignment,
    Disposition,
    HealthCodeUpdate,
    LoopState,
    Rules,
    Scan,
    decide,
)
from shared.domain.subsidies import LoopOnRecord, Subsidy, SubsidyRates, ledger
from shared.domain.vocabulary import DispositionKind, HealthCode, Kind, Status, Travel
from shared.identity import check_digit


@dataclass(frozen=True)
class District:
    name: str
    # Workers the bulletin counts back by early March; where it gives no count
    # (鹿城, 乐清, 永嘉), the rest of the city's 29,400 shared equally.
    returned: int
    # The provinces its recruitment teams worked in, as the bulletin tells
    # (empty: it does not say; any origin).
    recruits_in: tuple[str, ...] = ()


DISTRICTS = (
    District("瓯海区", 9_000, ("江西", "安徽", "贵州", "湖南")),
    District("瑞安市", 8_754, ("四川", "贵州", "湖南", "河南", "安徽")),
    District("经开区", 2_938, ("四川", "贵州", "安徽")),
    District("鹿城区", 2_903, ("重庆", "贵州", "安徽", "湖南")),
    District("乐清市", 2_903),
    District("永嘉县", 2_902),
)
# Origin cities with the first six digits of their residents' ID numbers.
ORIGINS = [
    ("贵州省毕节市", "520502"),
    ("贵州省遵义市", "520302"),
    ("贵州省黔东南州", "522601"),
    ("云南省昭通市", "530602"),
    ("湖南省邵阳市", "430502"),
    ("湖南省怀化市", "431202"),
    ("四川省遂宁市", "510903"),
    ("四川省南充市", "511302"),
    ("四川省成都市", "510104"),
    ("江西省上饶市", "361102"),
    ("江西省赣州市", "360702"),
    ("河南省信阳市", "411502"),
    ("安徽省阜阳市", "341202"),
    ("安徽省宿州市", "341302"),
    ("重庆市万州区", "500101"),
    ("广西壮族自治区百色市", "451002"),
]
TRADES = ["鞋业", "服装", "电气", "泵阀", "汽摩配件", "眼镜", "印刷包装", "锁具", "食品"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何罗高林"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
CARD_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

# How workers are named at a scan: most bound their health code to their
# electronic social-security card before leaving; a linked worker shows the
# health code, sometimes the card, rarely the ID card.
LINKED_SHARE = 0.95
SHOWS_HEALTH_CODE = 0.78
SHOWS_CARD = 0.18

OVERRIDE_REASON = "健康码黄码申诉中，带队负责人同意随车，抵温后复检"

# What health stations write when they record a disposition.
DISPOSITION_NOTES = {
    DispositionKind.ISOLATION: "发热，送集中隔离点隔离观察",
    DispositionKind.MEDICAL_OBSERVATION: "转定点医院医学观察，待核酸检测结果",
    DispositionKind.RELEASED: "核酸检测阴性，复测体温正常，解除留观",
    DispositionKind.CODE_APPEAL_UPHELD: "健康码申诉成立：赋码有误，平台已改为绿码",
    DispositionKind.WITHDRAWN: "本人决定暂不返岗，留在原籍",
}

# The demo's transport subsidies, yuan per worker whose loop is verified: roughly what
# the seed's city paid towards a chartered-bus seat, a special train's ticket, a flight,
# and a worker's own travel costs. ``returnloop up --demo`` runs with these unless the
# operator set RETURNLOOP_SUBSIDY_YUAN_*.
DEMO_SUBSIDY_YUAN = {"bus": 200, "train": 350, "flight": 800, "self": 150}

# Exceptions and practices, per mille of a city wave: roughly as often as a real
# wave saw them. ``self_drive`` and ``platform_green`` are practices (their loops
# close); the rest are the exceptions supervisors must see.
PER_MILLE = {
    "fever_recovers": 8,
    "fever_held": 6,
    "code_yellow": 4,
    "red_at_arrival": 4,
    "fever_at_arrival_recovers": 4,
    "no_show": 5,
    "lost_in_transit": 3,
    "wrong_gate": 5,
    "override_boarding": 1,
    "colour_stale_held": 2,
    "colour_missing_recovers": 3,
    "platform_green": 60,
    "self_drive": 30,
    "self_overdue": 1,
    # Dispositions after a failed check (the held ones of fever_held and red_at_arrival
    # are isolated or put under medical observation too).
    "released_at_departure": 2,
    "released_at_arrival": 2,
    "appeal_upheld": 2,
    "withdrawn_at_home": 3,
    "fever_withdrawn": 1,
}
# The small wave: each case at least once, the same counts whatever the seed.
SMALL_PLAN = {
    "fever_recovers": 2,
    "fever_held": 2,
    "code_yellow": 1,
    "red_at_arrival": 1,
    "fever_at_arrival_recovers": 1,
    "no_show": 2,
    "lost_in_transit": 1,
    "wrong_gate": 1,
    "override_boarding": 1,
    "colour_stale_held": 1,
    "colour_missing_recovers": 1,
    "platform_green": 20,
    "self_drive": 8,
    "self_overdue": 1,
    "released_at_departure": 1,
    "released_at_arrival": 1,
    "appeal_upheld": 1,
    "withdrawn_at_home": 2,
    "fever_withdrawn": 1,
}
SELF_TRAVEL = ("self_drive", "self_overdue")
HELD_AT_DEPARTURE_WITH_FEVER = (
    "fever_recovers",
    "fever_held",
    "released_at_departure",
    "fever_withdrawn",
)


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
    """A manifest, the links to make, the colour updates and the scans in delivery order,
    and what every loop should end as.

    Scans and updates name the worker by ``id_number`` or by ``code`` (a health-code
    id or a card number from ``links``); ``holders`` says whose each code is.
    """

    manifest: dict[str, Any]
    scans: list[dict[str, Any]]
    id_numbers: list[str]
    links: list[dict[str, str]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    holders: dict[str, str] = field(default_factory=dict)
    # Dispositions to record after the scans: {"id_number", "kind", "note", "at"}.
    dispositions: list[dict[str, str]] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict)
    exceptions: Counter[str] = field(default_factory=Counter)
    # exception or practice -> the ID numbers of the workers it was planted on
    planted: dict[str, list[str]] = field(default_factory=dict)

    def id_number_of(self, body: dict[str, Any]) -> str:
        """The ID number of the worker a scan or update names (by ID number or code)."""
        number = body.get("id_number")
        return number if number is not None else self.holders[body["code"]]

    def named_by(self) -> Counter[str]:
        """Scans by what names the worker: health_code, ssc_card or id_number."""
        cards = {link["ssc_card_no"] for link in self.links}
        return Counter(
            "id_number"
            if "code" not in body
            else "ssc_card"
            if body["code"] in cards
            else "health_code"
            for body in self.scans
        )

    def by_id_number_only(self, id_numbers: set[str]) -> None:
        """Name these workers by ID number wherever the wave used their codes (their link
        could not be made); their loops end the same."""
        if not id_numbers:
            return
        for body in (*self.scans, *self.updates):
            if "code" in body and self.holders[body["code"]] in id_numbers:
                body["id_number"] = self.holders[body.pop("code")]
        self.links = [link for link in self.links if link["id_number"] not in id_numbers]


@dataclass(frozen=True)
class Person:
    id_number: str
    # None: the worker never linked their codes and is named by ID number.
    health_code_id: str | None
    ssc_card_no: str | None

    def names(self, rng: random.Random) -> dict[str, str]:
        """What the scanner reads from this worker at one scan."""
        if self.health_code_id is not None and self.ssc_card_no is not None:
            shown = rng.random()
            if shown < SHOWS_HEALTH_CODE:
                return {"code": self.health_code_id}
            if shown < SHOWS_HEALTH_CODE + SHOWS_CARD:
                return {"code": self.ssc_card_no}
        return {"id_number": self.id_number}


def _id_number(rng: random.Random, area: str) -> str:
    # Any county of the origin city, any birth date in 43 years, any serial. Two city
    # waves of other seeds still share a person about one pair in seven: tests that
    # feed several into one database pick seeds that do not (``unused_seed``).
    county = f"{area[:4]}{rng.randrange(1, 31):02d}"
    born = datetime(1960, 1, 1) + timedelta(days=rng.randrange(0, 365 * 43))
    first17 = f"{county}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + check_digit(first17)


def _health_code_id(rng: random.Random, area: str) -> str:
    # Most show Zhejiang's code; some their home province's, which reads as a URL.
    if rng.random() < 0.8:
        return f"ZJJKM{rng.getrandbits(120):030X}"
    return f"https://hc.example.org/{area}/{rng.getrandbits(128):032x}"


def _card_number(rng: random.Random) -> str:
    return f"{rng.choice(CARD_LETTERS)}{rng.randrange(10**8):08d}"


_CST = timezone(timedelta(hours=8))


def _ts(moment: datetime) -> str:
    # Scanners send local time with its offset, as the contract allows.
    return moment.astimezone(_CST).isoformat()


def _share(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainder), at least one each
    when there are enough."""
    floor = 1 if total >= len(weights) else 0
    rest = total - floor * len(weights)
    exact = [rest * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: rest - sum(counts)]:
        counts[i] += 1
    return [floor + c for c in counts]


def build_wave(
    size: str,
    *,
    now: datetime,
    seed: int = 2020,
    rules: Rules | None = None,
    boarding_grace: timedelta = timedelta(minutes=30),
    shape: WaveShape | None = None,
    rates: SubsidyRates | None = None,
) -> Wave:
    """A wave of ``size`` (small or city) whose events lie in the hours before ``now``.

    ``shape`` overrides the size's numbers (the benchmark's waves of any size);
    ``rates`` are the subsidy rates the prediction pays (default: the demo's).
    """
    shape = shape or SHAPES[size]
    rng = random.Random(seed)
    run = rng.randrange(16**6)
    weights = [d.returned for d in DISTRICTS]
    district_of = [
        d.name
        for d, count in zip(DISTRICTS, _share(shape.enterprises, weights), strict=True)
        for _ in range(count)
    ]
    rng.shuffle(district_of)
    enterprises: list[dict[str, Any]] = []
    for index, district in enumerate(district_of, start=1):
        # The bulletin's monitoring: 711 firms short of 14,781 workers (~21 each),
        # 724 firms offering 6,142 jobs (~8.5 each).
        shortage = rng.randrange(5, 37)
        enterprises.append(
            {
                "enterprise_id": f"E{run % 10000:04d}-{index:03d}",
                "name": f"{district}{rng.choice(TRADES)}第{index}厂",
                "district": district,
                "shortage": shortage,
                "open_positions": round(shortage * rng.uniform(0.2, 0.6)),
            }
        )
    in_district: dict[str, list[dict[str, Any]]] = {}
    for enterprise in enterprises:
        in_district.setdefault(enterprise["district"], []).append(enterprise)
    vehicles = (
        [("bus", 50)] * shape.buses
        + [("train", 600)] * shape.trains
        + [("flight", 180)] * shape.flights
    )
    trips = []
    for index, (mode, _) in enumerate(vehicles, start=1):
        destination = rng.choices(DISTRICTS, weights)[0]
        origin, _area = rng.choice(
            [o for o in ORIGINS if o[0].startswith(destination.recruits_in)] or ORIGINS
        )
        hours = {"bus": 14, "train": 10, "flight": 3}[mode]
        departs = now - timedelta(hours=hours + 4, minutes=rng.randrange(0, 90))
        trips.append(
            {
                "trip_id": f"{mode[0].upper()}{run:06x}-{index:04d}",
                "mode": mode,
                "origin": origin,
                "destination": f"温州市{destination.name}",
                "departs_at": departs.isoformat(),
                "eta": (departs + timedelta(hours=hours)).isoformat(),
            }
        )
    if size == "small" and shape.workers >= sum(SMALL_PLAN.values()):
        plan = [kind for kind, count in SMALL_PLAN.items() for _ in range(count)]
    else:
        plan = [
            kind for kind, rate in PER_MILLE.items() for _ in range(shape.workers * rate // 1000)
        ]
    slots = rng.sample(range(shape.workers), len(plan))
    exception_of = dict(zip(slots, plan, strict=True))
    organised = shape.workers - sum(kind in SELF_TRAVEL for kind in plan)
    capacity = [cap for _, cap in vehicles]
    total_capacity = sum(capacity)
    workers: list[dict[str, Any]] = []
    id_numbers: list[str] = []
    links: list[dict[str, str]] = []
    updates: list[dict[str, Any]] = []
    holders: dict[str, str] = {}
    scans_by_worker = []
    dispositions: list[dict[str, str]] = []
    exceptions: Counter[str] = Counter()
    planted: dict[str, list[str]] = {}
    trip_index, seat = 0, 0
    used_ids: set[str] = set()
    for index in range(shape.workers):
        kind = exception_of.get(index)
        trip: dict[str, Any] | None = None
        if kind in SELF_TRAVEL:
            origin, area = rng.choice(ORIGINS)
            enterprise = rng.choice(enterprises)
        else:
            trip = trips[trip_index]
            seat += 1
            if (
                seat >= capacity[trip_index] * organised / total_capacity
                and trip_index < len(trips) - 1
            ):
                trip_index, seat = trip_index + 1, 0
            origin = trip["origin"]
            area = next(area for name, area in ORIGINS if name == origin)
            district = trip["destination"].removeprefix("温州市")
            enterprise = rng.choice(in_district.get(district) or enterprises)
        id_number = _id_number(rng, area)
        while id_number in used_ids:
            id_number = _id_number(rng, area)
        used_ids.add(id_number)
        person = Person(id_number, None, None)
        if rng.random() < LINKED_SHARE:
            health_code_id = _health_code_id(rng, area)
            card = _card_number(rng)
            while card in holders or health_code_id in holders:
                health_code_id, card = _health_code_id(rng, area), _card_number(rng)
            person = Person(id_number, health_code_id, card)
            holders[health_code_id] = holders[card] = id_number
            links.append(
                {"id_number": id_number, "health_code_id": health_code_id, "ssc_card_no": card}
            )
        worker: dict[str, Any] = {
            "id_number": id_number,
            "name": rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, 2)),
            "enterprise_id": enterprise["enterprise_id"],
        }
        if trip is None:
            worker["travel"] = Travel.SELF.value
        else:
            worker["trip_id"] = trip["trip_id"]
        workers.append(worker)
        id_numbers.append(id_number)
        nth = exceptions[kind] if kind else 0
        journey = _Journey(rng, f"{run:06x}-{index:05d}", person, kind, nth)
        if kind:
            exceptions[kind] += 1
            planted.setdefault(kind, []).append(id_number)
        if trip is None:
            journey.drive(now, origin, worker, enterprise)
        else:
            journey.travel(trip, enterprise, enterprises)
        scans_by_worker.append(journey.scans)
        updates.extend(journey.updates)
        dispositions.extend(journey.dispositions)
    deliveries = _deliver(rng, scans_by_worker)
    wave = Wave(
        manifest={"enterprises": enterprises, "trips": trips, "workers": workers},
        scans=deliveries,
        id_numbers=id_numbers,
        links=links,
        updates=updates,
        holders=holders,
        dispositions=dispositions,
        exceptions=exceptions,
        planted=planted,
    )
    wave.expected = expected_outcome(
        wave,
        now=now,
        rules=rules or Rules(),
        boarding_grace=boarding_grace,
        rates=rates if rates is not None else demo_subsidy_rates(),
    )
    return wave


class _Journey:
    """One worker's scans (and platform colours) from home door to factory door."""

    def __init__(
        self, rng: random.Random, prefix: str, person: Person, kind: str | None, nth: int = 0
    ) -> None:
        self.rng = rng
        self.prefix = prefix
        self.person = person
        self.kind = kind
        # How many workers were planted with this kind before this one.
        self.nth = nth
        self.scans: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.dispositions: list[dict[str, str]] = []
        # Checks go by the platform's colour: none is scanned.
        self.platform = kind in ("platform_green", "colour_stale_held")

    def scan(self, kind: str, at: datetime, **fields: Any) -> None:
        self.scans.append(
            {
                "scan_id": f"{self.prefix}-{len(self.scans)}",
                "kind": kind,
                **self.person.names(self.rng),
                "occurred_at": _ts(at),
                **fields,
            }
        )

    def check(
        self,
        kind: str,
        at: datetime,
        station: str,
        temperature_c: float | None = None,
        **fields: Any,
    ) -> None:
        if temperature_c is None:
            temperature_c = round(self.rng.uniform(36.0, 37.1), 1)
        if self.platform:
            fields.pop("health_code", None)
        else:
            fields.setdefault("health_code", "green")
        self.scan(kind, at, station=station, temperature_c=temperature_c, **fields)

    def dispose(self, kind: DispositionKind, at: datetime) -> None:
        """A disposition a health station (or the recruiting team) records at ``at``."""
        self.dispositions.append(
            {
                "id_number": self.person.id_number,
                "kind": kind.value,
                "note": DISPOSITION_NOTES[kind],
                "at": _ts(at),
            }
        )

    def colour(self, colour: str, as_of: datetime) -> None:
        """A colour the health-code platform reports (by the health code where linked)."""
        named = (
            {"code": self.person.health_code_id}
            if self.person.health_code_id is not None
            else {"id_number": self.person.id_number}
        )
        self.updates.append({**named, "health_code": colour, "as_of": _ts(as_of)})

    def departure(self, check_at: datetime, team: str) -> bool:
        """The departure check(s); whether the worker goes on."""
        rng = self.rng
        if self.kind == "platform_green":
            self.colour("green", check_at - timedelta(minutes=rng.randrange(30, 360)))
        if self.kind == "colour_stale_held":
            # The platform's last colour is a day and a half old: the check cannot pass.
            self.colour("green", check_at - timedelta(hours=rng.randrange(30, 40)))
            self.check("departure_check", check_at, team)
            return False
        if self.kind in HELD_AT_DEPARTURE_WITH_FEVER:
            self.check("departure_check", check_at, team, round(rng.uniform(37.4, 38.6), 1))
            if self.kind == "fever_recovers":
                check_at += timedelta(minutes=20)
            else:
                self.after_fever_at_departure(check_at)
                return False
        if self.kind in ("code_yellow", "override_boarding"):
            self.check("departure_check", check_at, team, health_code="yellow")
            return self.kind == "override_boarding"
        self.check("departure_check", check_at, team)
        return True

    def after_fever_at_departure(self, check_at: datetime) -> None:
        """Held with fever at departure: what the health station records next. The bus
        leaves without them in every case."""
        rng = self.rng
        if self.kind == "fever_held" and self.nth % 2 == 0:
            self.dispose(
                DispositionKind.ISOLATION, check_at + timedelta(minutes=rng.randrange(20, 40))
            )
        elif self.kind == "released_at_departure":
            # Observed, retested negative hours later: released, but the bus has gone.
            observed = check_at + timedelta(minutes=rng.randrange(20, 40))
            self.dispose(DispositionKind.MEDICAL_OBSERVATION, observed)
            self.dispose(DispositionKind.RELEASED, observed + timedelta(hours=rng.uniform(3, 6)))
        elif self.kind == "fever_withdrawn":
            self.dispose(DispositionKind.WITHDRAWN, check_at + timedelta(hours=rng.uniform(1, 3)))

    def arrival(self, arrive_at: datetime, station: str) -> datetime | None:
        """The arrival recheck(s); when the worker passed, or None if they did not."""
        rng = self.rng
        if self.kind == "platform_green":
            # The platform refreshes the colour on the way.
            self.colour("green", arrive_at - timedelta(minutes=rng.randrange(30, 240)))
        if self.kind in ("red_at_arrival", "override_boarding"):
            colour = "red" if self.kind == "red_at_arrival" else "green"
            self.check("arrival_check", arrive_at, station, health_code=colour)
            if self.kind == "red_at_arrival":
                observed = arrive_at + timedelta(minutes=rng.randrange(15, 45))
                self.dispose(DispositionKind.MEDICAL_OBSERVATION, observed)
            return None
        if self.kind == "released_at_arrival":
            # Fever at the station: observed, retested negative within the hour, released
            # and rechecked. (Every event stays well before ``now``: arrivals are at least
            # three and a half hours back, and the check-in follows within two.)
            self.check("arrival_check", arrive_at, station, round(rng.uniform(37.4, 38.2), 1))
            observed = arrive_at + timedelta(minutes=rng.randrange(10, 20))
            self.dispose(DispositionKind.MEDICAL_OBSERVATION, observed)
            released = observed + timedelta(minutes=rng.randrange(35, 55))
            self.dispose(DispositionKind.RELEASED, released)
            arrive_at = released + timedelta(minutes=rng.randrange(5, 10))
        if self.kind == "appeal_upheld":
            # Scanned yellow at the station; the worker appeals, the platform admits the
            # colour was wrongly assigned, and the recheck shows green.
            self.check("arrival_check", arrive_at, station, health_code="yellow")
            upheld = arrive_at + timedelta(minutes=rng.randrange(40, 70))
            self.dispose(DispositionKind.CODE_APPEAL_UPHELD, upheld)
            arrive_at = upheld + timedelta(minutes=rng.randrange(5, 10))
        if self.kind == "fever_at_arrival_recovers":
            self.check("arrival_check", arrive_at, station, 37.6)
            arrive_at += timedelta(minutes=30)
        if self.kind == "colour_missing_recovers":
            # No colour scanned and none from the platform: held until the worker
            # shows the code on their phone.
            self.scan(
                "arrival_check",
                arrive_at,
                station=station,
                temperature_c=round(rng.uniform(36.0, 37.1), 1),
            )
            arrive_at += timedelta(minutes=10)
        self.check("arrival_check", arrive_at, station)
        return arrive_at

    def checkin(self, at: datetime, enterprise: dict[str, Any]) -> None:
        self.scan(
            "checkin",
            at,
            station=f"{enterprise['name']}门岗",
            enterprise_id=enterprise["enterprise_id"],
        )

    def travel(
        self, trip: dict[str, Any], enterprise: dict[str, Any], enterprises: list[dict[str, Any]]
    ) -> None:
        """By chartered bus, special train or flight: all four checkpoints."""
        rng = self.rng
        departs = datetime.fromisoformat(trip["departs_at"])
        eta = datetime.fromisoformat(trip["eta"])
        if self.kind == "withdrawn_at_home":
            # Told the recruiting team the evening before that they stay home.
            self.dispose(DispositionKind.WITHDRAWN, departs - timedelta(hours=rng.uniform(3, 12)))
            return
        if self.kind == "no_show":
            return
        check_at = departs - timedelta(minutes=rng.randrange(45, 120))
        if not self.departure(check_at, f"{trip['origin']}招工组"):
            return
        board_at = departs - timedelta(minutes=rng.randrange(1, 15))
        door = {"station": f"{trip['trip_id']} 车门", "trip_id": trip["trip_id"]}
        if self.kind == "override_boarding":
            door["override_reason"] = OVERRIDE_REASON
        self.scan("boarding", board_at, **door)
        if self.kind == "lost_in_transit":
            return
        arrive_at = eta + timedelta(minutes=rng.randrange(0, 30))
        cleared_at = self.arrival(arrive_at, f"{trip['destination']}健康服务站")
        if cleared_at is None:
            return
        target = enterprise
        if self.kind == "wrong_gate":
            target = next(e for e in enterprises if e is not enterprise)
        self.checkin(cleared_at + timedelta(minutes=rng.randrange(30, 120)), target)

    def drive(
        self, now: datetime, origin: str, worker: dict[str, Any], enterprise: dict[str, Any]
    ) -> None:
        """Driving back on their own: no boarding; rechecked at the expressway exit."""
        rng = self.rng
        # The overdue one set off a day ago: long past its expected arrival + grace.
        hours_ago = rng.uniform(22, 24) if self.kind == "self_overdue" else rng.uniform(17, 22)
        check_at = now - timedelta(hours=hours_ago)
        drive = timedelta(hours=rng.uniform(9, 13))
        if self.kind == "self_overdue" or rng.random() < 0.6:
            expected = check_at + drive + timedelta(minutes=rng.randrange(-60, 60))
            worker["expected_arrival"] = _ts(expected)
        self.check("departure_check", check_at, f"{origin}招工组（自驾返岗）")
        if self.kind == "self_overdue":
            return
        arrive_at = check_at + drive
        cleared_at = self.arrival(arrive_at, f"温州市{enterprise['district']}高速出口健康服务站")
        assert cleared_at is not None
        self.checkin(cleared_at + timedelta(minutes=rng.randrange(30, 120)), enterprise)


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
        override_reason=body.get("override_reason"),
    )


def to_domain_update(body: dict[str, Any]) -> HealthCodeUpdate:
    return HealthCodeUpdate(
        health_code=HealthCode(body["health_code"]), as_of=datetime.fromisoformat(body["as_of"])
    )


def to_domain_dispositions(wave: Wave) -> dict[str, list[Disposition]]:
    """ID number -> the wave's dispositions as the domain reads them. The server gives each
    its own id; the fold needs one only to order dispositions of one instant, and the wave
    never records two for a worker at the same instant."""
    found: dict[str, list[Disposition]] = {}
    for index, body in enumerate(wave.dispositions):
        found.setdefault(body["id_number"], []).append(
            Disposition(
                disposition_id=f"demo-{index:06d}",
                kind=DispositionKind(body["kind"]),
                at=datetime.fromisoformat(body["at"]),
                note=body["note"],
            )
        )
    return found


def demo_subsidy_rates() -> SubsidyRates:
    return SubsidyRates(**{way: Decimal(rate) for way, rate in DEMO_SUBSIDY_YUAN.items()})


def assignment_of(worker: dict[str, Any]) -> Assignment:
    """What a manifest worker entry expects, as the domain reads it."""
    expected = worker.get("expected_arrival")
    return Assignment(
        worker.get("enterprise_id"),
        worker.get("trip_id"),
        Travel(worker.get("travel", Travel.ORGANISED.value)),
        datetime.fromisoformat(expected) if expected else None,
    )


def expected_states(wave: Wave, *, now: datetime, rules: Rules) -> dict[str, LoopState]:
    """ID number -> the state the pure domain folds from the wave's scans, colours and
    dispositions."""
    etas = {t["trip_id"]: datetime.fromisoformat(t["eta"]) for t in wave.manifest["trips"]}
    scans: dict[str, list[Scan]] = {}
    for body in wave.scans:
        scans.setdefault(wave.id_number_of(body), []).append(to_domain_scan(body))
    updates: dict[str, list[HealthCodeUpdate]] = {}
    for body in wave.updates:
        updates.setdefault(wave.id_number_of(body), []).append(to_domain_update(body))
    dispositions = to_domain_dispositions(wave)
    return {
        worker["id_number"]: decide(
            scans.get(worker["id_number"], ()),
            updates.get(worker["id_number"], ()),
            dispositions.get(worker["id_number"], ()),
            now=now,
            assignment=assignment_of(worker),
            trip_etas=etas,
            rules=rules,
        )
        for worker in wave.manifest["workers"]
    }


def expected_ledger(wave: Wave, states: dict[str, LoopState], rates: SubsidyRates) -> list[Subsidy]:
    """The domain's subsidy ledger over these loop states (``worker_ref``: the ID number),
    each worker paid at the mode of their manifest trip, or ``self``."""
    modes = {t["trip_id"]: t["mode"] for t in wave.manifest["trips"]}
    loops = []
    for worker in wave.manifest["workers"]:
        state = states[worker["id_number"]]
        checkin = state.checkpoints.get(Kind.CHECKIN)
        loops.append(
            LoopOnRecord(
                worker_ref=worker["id_number"],
                enterprise_id=worker.get("enterprise_id"),
                status=state.status,
                travel=Travel(worker.get("travel", Travel.ORGANISED.value)),
                mode=modes.get(worker.get("trip_id") or state.boarded_trip_id or ""),
                closed_at=checkin.at if checkin and state.status is Status.CLOSED else None,
            )
        )
    return ledger(loops, rates)


def summarise_ledger(subsidies: list[Subsidy]) -> dict[str, Any]:
    """A ledger's total, paid loops and per-enterprise (workers, amount), as the API sums them."""
    enterprises: dict[str, tuple[int, Decimal]] = {}
    for subsidy in subsidies:
        enterprise_id = subsidy.loop.enterprise_id
        assert enterprise_id is not None  # the ledger pays enterprises only
        workers, amount = enterprises.get(enterprise_id, (0, Decimal(0)))
        enterprises[enterprise_id] = (workers + 1, amount + subsidy.amount_yuan)
    return {
        "total_yuan": sum((s.amount_yuan for s in subsidies), Decimal(0)),
        "workers": len(subsidies),
        "enterprises": dict(sorted(enterprises.items())),
    }


def expected_outcome(
    wave: Wave,
    *,
    now: datetime,
    rules: Rules,
    boarding_grace: timedelta = timedelta(minutes=30),
    rates: SubsidyRates | None = None,
) -> dict[str, Any]:
    """Fold each worker's scans, colours and dispositions with the pure domain: the counts
    the system must reach, each departed trip's no-shows (manifest workers who never
    boarded), and the subsidy ledger at ``rates`` (default: the demo's)."""
    states = expected_states(wave, now=now, rules=rules)
    departed = {
        t["trip_id"]
        for t in wave.manifest["trips"]
        if now > datetime.fromisoformat(t["departs_at"]) + boarding_grace
    }
    statuses: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    alerts: Counter[str] = Counter()
    per_worker: dict[str, str] = {}
    no_show: dict[str, list[str]] = {}
    for worker in wave.manifest["workers"]:
        state = states[worker["id_number"]]
        statuses[state.status.value] += 1
        stages[state.stage.value] += 1
        per_worker[worker["id_number"]] = state.status.value
        for kind in state.open_alerts:
            alerts[kind.value] += 1
        trip_id = worker.get("trip_id")
        if (
            trip_id in departed
            and state.boarded_trip_id is None
            and Kind.BOARDING not in state.checkpoints
        ):
            no_show.setdefault(trip_id, []).append(worker["id_number"])
    return {
        "status": dict(statuses),
        "stage": dict(stages),
        "open_alerts": dict(alerts),
        "per_worker": per_worker,
        "no_show": no_show,
        "subsidies": summarise_ledger(
            expected_ledger(wave, states, rates if rates is not None else demo_subsidy_rates())
        ),
    }
