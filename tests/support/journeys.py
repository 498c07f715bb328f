"""What the e2e modules of contract v1.1 share: manifests built in one call, linked codes,
colour updates over HTTP, clients with a role's token, event times relative to now, and
reading only what a topic received after a test started."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from tests.support import api
from tests.support.api import bearer, issue_token, post_manifest
from tests.support.processes import RunningSystem
from tests.support.servers import random_id_number, unique

#: How long to wait for the tracker: the servers are shared with other suites, and busy.
PATIENCE = 90.0

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "芳强伟敏静丽军磊洋勇艳杰娟涛明超秀霞平刚"


def person_name() -> str:
    """A Chinese name with a random tail, so that a test can tell its workers apart."""
    return random.choice(_SURNAMES) + random.choice(_GIVEN) + unique("")[1:7]


def health_code_id() -> str:
    return unique("hc").replace("-", "_")


def url_code(length: int = 512) -> str:
    """A health-code id as some regions' QR codes carry it: a URL, exactly ``length`` long."""
    head = f"https://hc.example.gov.cn/v2/q?region=330302&t={unique('t')}&sig="
    assert len(head) < length
    return head + "".join(random.choice("0123456789abcdef") for _ in range(length - len(head)))


def card_number() -> str:
    """An electronic social-security card number (letters and digits, 9–20)."""
    return "S" + "".join(random.choice("0123456789") for _ in range(11))


def ago(hours: float = 0.0, *, minutes: float = 0.0) -> datetime:
    """A moment ``hours`` (and ``minutes``) before now; negative values lie ahead."""
    return datetime.now(UTC) - timedelta(hours=hours, minutes=minutes)


def iso(moment: datetime) -> str:
    return moment.isoformat()


# --- the manifest ---------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolled:
    """A worker on a manifest, with what the test needs to name them."""

    id_number: str
    name: str
    enterprise_id: str | None
    trip_id: str | None

    @property
    def id_masked(self) -> str:
        return self.id_number[:6] + "********" + self.id_number[-4:]


def enterprise(enterprise_id: str, name: str = "鹿城鞋革厂") -> dict[str, Any]:
    return {"enterprise_id": enterprise_id, "name": name, "shortage": 10}


def trip(trip_id: str, *, departs_at: datetime, eta: datetime, mode: str = "bus") -> dict[str, Any]:
    return {
        "trip_id": trip_id,
        "mode": mode,
        "origin": "贵州毕节",
        "destination": "温州鹿城",
        "departs_at": iso(departs_at),
        "eta": iso(eta),
    }


async def enrol(
    admin: httpx.AsyncClient,
    count: int = 1,
    *,
    enterprise_id: str | None = None,
    trip_id: str | None = None,
    departs_at: datetime | None = None,
    eta: datetime | None = None,
    **worker_fields: Any,
) -> list[Enrolled]:
    """``count`` new workers on a new manifest: a new enterprise (unless given), and a new
    trip when ``departs_at`` is given (default: left yesterday, due in a day)."""
    enterprise_id = enterprise_id or unique("E")
    trips = []
    if trip_id is None and worker_fields.get("travel") != "self":
        trip_id = unique("T")
        departs_at = departs_at or ago(4)
        trips.append(
            trip(trip_id, departs_at=departs_at, eta=eta or departs_at + timedelta(days=1))
        )
    workers = [
        Enrolled(random_id_number(), person_name(), enterprise_id, trip_id) for _ in range(count)
    ]
    await post_manifest(
        admin,
        {
            "enterprises": [enterprise(enterprise_id)],
            "trips": trips,
            "workers": [
                {
                    "id_number": worker.id_number,
                    "name": worker.name,
                    "enterprise_id": enterprise_id,
                    **({"trip_id": trip_id} if trip_id is not None else {}),
                    **{
                        name: iso(value) if isinstance(value, datetime) else value
                        for name, value in worker_fields.items()
                    },
                }
                for worker in workers
            ],
        },
    )
    return workers


# --- links and colour updates ---------------------------------------------------------


async def link(
    admin: httpx.AsyncClient,
    id_number: str,
    *,
    code: str | None = None,
    card: str | None = None,
) -> tuple[str, str]:
    """Bind a health-code id and a card number to the worker; the two codes."""
    code, card = code or health_code_id(), card or card_number()
    response = await admin.post(
        "/v1/links", json={"id_number": id_number, "health_code_id": code, "ssc_card_no": card}
    )
    assert response.status_code == 201, response.text
    return code, card


def colour(health_code: str, as_of: datetime, **worker: str) -> dict[str, Any]:
    """A colour update naming the worker by ``id_number=`` or ``code=``."""
    return {**worker, "health_code": health_code, "as_of": iso(as_of)}


async def post_colours(client: httpx.AsyncClient, *updates: Any) -> list[dict[str, Any]]:
    """POST /v1/healthcode/updates; it must be taken (202). Each update's result, in order."""
    response = await client.post("/v1/healthcode/updates", json={"updates": list(updates)})
    assert response.status_code == 202, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert [result["index"] for result in results] == list(range(len(updates)))
    return results


# --- clients with a role --------------------------------------------------------------


@asynccontextmanager
async def role_client(
    system: RunningSystem, admin: httpx.AsyncClient, role: str, **fields: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding a new token of ``role`` (``fields``: its enterprise, …)."""
    token = await issue_token(admin, role, **fields)
    async with httpx.AsyncClient(base_url=system.url, headers=bearer(token), timeout=30) as client:
        yield client


# --- topics, read from where a test started -------------------------------------------


class TopicTail:
    """What ``topic`` receives after :meth:`start` (every partition), found by predicate."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.start_offsets: dict[TopicPartition, int] = {}

    async def start(self) -> TopicTail:
        # Subscribed, so that starting fetches the topic's metadata; it is never polled.
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(self.topic, p)
                for p in sorted(consumer.partitions_for_topic(self.topic) or ())
            ]
            assert partitions, f"no topic {self.topic}"
            self.start_offsets = dict(await consumer.end_offsets(partitions))
        finally:
            await consumer.stop()
        return self

    async def find(
        self, matches: Callable[[ConsumerRecord], bool], *, within: float = PATIENCE
    ) -> list[ConsumerRecord]:
        """Every record since the start that ``matches``, once there is at least one."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(list(self.start_offsets))
            for partition, offset in self.start_offsets.items():
                consumer.seek(partition, offset)
            found: list[ConsumerRecord] = []
            deadline = time.monotonic() + within
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    found.extend(record for record in records if matches(record))
                if found and not batches:
                    return found
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing on {self.topic} matched within {within} s")
        finally:
            await consumer.stop()


def holds(text: str) -> Callable[[ConsumerRecord], bool]:
    """For :meth:`TopicTail.find`: the record's value contains ``text``."""
    needle = text.encode()
    return lambda record: record.value is not None and needle in record.value


def headers_of(record: ConsumerRecord) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers or ()}


def recorded(kind: str, scan_id: str) -> Callable[[dict[str, Any]], bool]:
    """For ``wait_for_view``: the worker's ``kind`` checkpoint is the scan ``scan_id``."""

    def check(view: dict[str, Any]) -> bool:
        checkpoint = view.get("checkpoints", {}).get(kind) if view["status_code"] == 200 else None
        return checkpoint is not None and checkpoint.get("scan_id") == scan_id

    return check


def returnloop_cli(
    system: RunningSystem, *arguments: str, timeout: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """``returnloop …`` (the installed console script) with the running system's settings."""
    script = Path(sys.executable).with_name("returnloop")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]
    return subprocess.run(
        [*command, *arguments],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def replay_dead_letter(system: RunningSystem, letter: ConsumerRecord, *, reason: str) -> str:
    """``returnloop dlq replay --reason REASON --ids P:O`` for one dead letter (this test's,
    not the others' on the shared topic); what it printed. It must succeed."""
    letter_id = f"{letter.partition}:{letter.offset}"
    done = await asyncio.to_thread(
        returnloop_cli, system, "dlq", "replay", "--reason", reason, "--ids", letter_id
    )
    assert done.returncode == 0, done.stderr
    assert letter_id in done.stdout, done.stdout
    return done.stdout


async def wait_for_view(
    client: httpx.AsyncClient,
    id_number: str,
    until: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    within: float = PATIENCE,
) -> dict[str, Any]:
    """:func:`tests.support.api.wait_for_view`, with :data:`PATIENCE`."""
    return await api.wait_for_view(client, id_number, until, what=what, within=within)


def all_recorded(*scans: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """For ``wait_for_view``: every kind among ``scans`` has its latest one (in event time)
    as the worker's checkpoint. The kinds travel different topics, so the last scan sent
    being applied says nothing of the others."""
    latest: dict[str, dict[str, Any]] = {}
    for scan in scans:
        kept = latest.get(scan["kind"])
        if kept is None or scan["occurred_at"] >= kept["occurred_at"]:
            latest[scan["kind"]] = scan
    checks = [recorded(kind, scan["scan_id"]) for kind, scan in latest.items()]
    return lambda view: all(check(view) for check in checks)


async def wait_for_scans(
    client: httpx.AsyncClient, id_number: str, *scans: dict[str, Any]
) -> dict[str, Any]:
    """The worker's view once every one of ``scans`` is applied (see :func:`all_recorded`)."""
    return await wait_for_view(client, id_number, all_recorded(*scans), what="the scans applied")
