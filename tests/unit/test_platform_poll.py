"""The health-code platform poller on in-memory fakes: who is asked, what is published.

The poller is wired by ``services.tracker.main.bootstrap_poller``, the function the
running tracker uses, with the ``InMemoryHealthCodePlatform``, a fake source of
workers in transit and ``FakePublisher`` passed in.
"""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.tracker.main import TrackerProcess, bootstrap_poller, poller_settings
from shared import topics
from shared.adapters.healthcode import InMemoryHealthCodePlatform
from shared.adapters.metrics import Metrics
from shared.id_encryption import IdNumberCipher
from shared.identity import Pseudonymiser, check_digit
from shared.service_layer.intake import validate_records
from shared.service_layer.platform_poll import PlatformPoller
from shared.service_layer.ports import InputRecord, TransitWorker
from shared.settings import Settings, SettingsError
from tests.fakes import FakePublisher

BEIJING = timezone(timedelta(hours=8))
AS_OF = datetime(2020, 3, 2, 9, 30, tzinfo=BEIJING)
CIPHER = IdNumberCipher([Fernet.generate_key()])
PSEUDONYMISER = Pseudonymiser(b"platform-poll-unit-tests-worker-ref-key")

_serials = itertools.count()


def new_id_number() -> str:
    first17 = f"44030519880512{next(_serials) % 1000:03d}"
    return first17 + check_digit(first17)


class FakeWorkersInTransit:
    """``WorkersInTransit`` over a dict; remembers the pages it was asked for."""

    def __init__(self) -> None:
        self.workers: dict[str, str] = {}  # worker_ref -> encrypted ID number
        self.pages: list[tuple[str, int]] = []

    def add(self, id_number: str) -> str:
        worker_ref = PSEUDONYMISER.worker_ref(id_number)
        self.workers[worker_ref] = CIPHER.encrypt(id_number)
        return worker_ref

    async def in_transit_after(self, after: str, limit: int) -> list[TransitWorker]:
        self.pages.append((after, limit))
        return [
            TransitWorker(ref, encrypted)
            for ref, encrypted in sorted(self.workers.items())
            if ref > after
        ][:limit]


def poller(
    workers: FakeWorkersInTransit,
    platform: InMemoryHealthCodePlatform,
    publisher: FakePublisher,
    metrics: Metrics | None = None,
    **tuning: int,
) -> PlatformPoller:
    wired = bootstrap_poller(
        workers=workers,
        platform=platform,
        publisher=publisher,
        cipher=CIPHER,
        metrics=metrics or Metrics(CollectorRegistry()),
    )
    for name, value in tuning.items():
        setattr(wired, name, value)
    return wired


def polls(metrics: Metrics) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "returnloop_platform_polls_total"
    }


async def test_each_answer_is_published_keyed_by_worker_ref_with_the_platforms_as_of() -> None:
    workers, platform, publisher = (
        FakeWorkersInTransit(),
        InMemoryHealthCodePlatform(),
        FakePublisher(),
    )
    yellow, green = new_id_number(), new_id_number()
    refs = {workers.add(yellow): yellow, workers.add(green): green}
    platform.set_colour(yellow, "yellow", AS_OF)
    platform.set_colour(green, "green", AS_OF - timedelta(hours=3))

    found = await poller(workers, platform, publisher).poll()

    assert (found.answered, found.no_code, found.error) == (2, 0, 0)
    sent = publisher.published[topics.HEALTHCODE_UPDATES]
    by_ref = {key.decode(): orjson.loads(value) for key, value, _ in sent if key}
    assert set(by_ref) == set(refs)
    for ref, body in by_ref.items():
        colour = "yellow" if refs[ref] == yellow else "green"
        as_of = AS_OF if colour == "yellow" else AS_OF - timedelta(hours=3)
        assert body == {"id_number": refs[ref], "health_code": colour, "as_of": as_of.isoformat()}
        assert datetime.fromisoformat(body["as_of"]) == as_of
    assert all(dict(headers or [])["received_at"] for _, _, headers in sent)


async def test_what_it_publishes_is_what_the_tracker_intake_accepts_for_that_worker() -> None:
    workers, platform, publisher = (
        FakeWorkersInTransit(),
        InMemoryHealthCodePlatform(),
        FakePublisher(),
    )
    id_number = new_id_number()
    ref = workers.add(id_number)
    platform.set_colour(id_number, "red", AS_OF)

    await poller(workers, platform, publisher).poll()

    [(key, value, _)] = publisher.published[topics.HEALTHCODE_UPDATES]
    assert key is not None
    record = InputRecord(topics.HEALTHCODE_UPDATES, 0, 0, key, value)
    intake = validate_records([record], PSEUDONYMISER, now=datetime.now(UTC))
    assert intake.rejected == []
    [accepted] = intake.updates
    assert accepted.worker_ref == ref == key.decode()
    assert (accepted.update.health_code.value, accepted.update.as_of) == ("red", AS_OF)


async def test_workers_the_platform_has_no_code_for_are_skipped() -> None:
    workers, platform, publisher = (
        FakeWorkersInTransit(),
        InMemoryHealthCodePlatform(),
        FakePublisher(),
    )
    known, unknown = new_id_number(), new_id_number()
    known_ref = workers.add(known)
    workers.add(unknown)
    platform.set_colour(known, "green", AS_OF)
    metrics = Metrics(CollectorRegistry())

    found = await poller(workers, platform, publisher, metrics).poll()

    assert (found.answered, found.no_code, found.error) == (1, 1, 0)
    assert [key for key, _, _ in publisher.published[topics.HEALTHCODE_UPDATES]] == [
        known_ref.encode()
    ]
    assert polls(metrics) == {"answered": 1, "no_code": 1}


async def test_an_error_for_one_worker_does_not_stop_the_others_nor_reach_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    workers, platform, publisher = (
        FakeWorkersInTransit(),
        InMemoryHealthCodePlatform(),
        FakePublisher(),
    )
    failing, fine = [new_id_number() for _ in range(3)], [new_id_number() for _ in range(5)]
    failing_refs = {workers.add(id_number) for id_number in failing}
    fine_refs = {workers.add(id_number) for id_number in fine}
    for id_number in failing:
        platform.set_colour(id_number, "green", AS_OF)
        platform.fail_for(id_number)
    for id_number in fine:
        platform.set_colour(id_number, "yellow", AS_OF)
    workers.workers["w_unreadable"] = IdNumberCipher([Fernet.generate_key()]).encrypt(fine[0])
    metrics = Metrics(CollectorRegistry())

    with caplog.at_level(logging.WARNING):
        found = await poller(workers, platform, publisher, metrics).poll()

    assert (found.answered, found.no_code, found.error) == (5, 0, 4)
    published = {
        key.decode() for key, _, _ in publisher.published[topics.HEALTHCODE_UPDATES] if key
    }
    assert published == fine_refs
    assert polls(metrics) == {"answered": 5, "error": 4}
    logged = {record.__dict__.get("worker_ref") for record in caplog.records}
    assert logged == failing_refs | {"w_unreadable"}
    text = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert not any(id_number in text for id_number in failing + fine)


async def test_it_pages_through_more_workers_than_one_page() -> None:
    workers, platform, publisher = (
        FakeWorkersInTransit(),
        InMemoryHealthCodePlatform(),
        FakePublisher(),
    )
    id_numbers = [new_id_number() for _ in range(23)]
    for id_number in id_numbers:
        workers.add(id_number)
        platform.set_colour(id_number, "green", AS_OF)

    found = await poller(workers, platform, publisher, page_size=10).poll()

    assert (found.answered, found.pages) == (23, 3)
    refs = sorted(workers.workers)
    assert workers.pages == [("", 10), (refs[9], 10), (refs[19], 10)]
    keys = [key.decode() for key, _, _ in publisher.published[topics.HEALTHCODE_UPDATES] if key]
    assert sorted(keys) == refs
    assert sorted(platform.asked) == sorted(id_numbers)


async def test_a_full_last_page_ends_with_an_empty_one() -> None:
    workers, platform, publisher = (
        FakeWorkersInTransit(),
        InMemoryHealthCodePlatform(),
        FakePublisher(),
    )
    for _ in range(20):
        workers.add(new_id_number())

    found = await poller(workers, platform, publisher, page_size=10).poll()

    assert (found.no_code, found.pages) == (20, 2)
    assert len(workers.pages) == 3 and publisher.published[topics.HEALTHCODE_UPDATES] == []


async def test_the_platform_is_asked_only_a_few_at_a_time() -> None:
    import asyncio

    class SlowPlatform(InMemoryHealthCodePlatform):
        def __init__(self) -> None:
            super().__init__()
            self.running = self.peak = 0

        async def colour_of(self, id_number: str):  # type: ignore[no-untyped-def]
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(0.001)
            self.running -= 1
            return await super().colour_of(id_number)

    workers, platform, publisher = FakeWorkersInTransit(), SlowPlatform(), FakePublisher()
    for _ in range(40):
        workers.add(new_id_number())

    await poller(workers, platform, publisher, concurrency=3).poll()

    assert platform.peak == 3


async def test_a_failing_publish_fails_the_round_for_the_next_one_to_retry() -> None:
    workers, platform, publisher = (
        FakeWorkersInTransit(),
        InMemoryHealthCodePlatform(),
        FakePublisher(),
    )
    id_number = new_id_number()
    workers.add(id_number)
    platform.set_colour(id_number, "red", AS_OF)
    publisher.fail()
    polling = poller(workers, platform, publisher)

    with pytest.raises(Exception, match="unreachable"):
        await polling.poll()
    publisher.recover()
    assert (await polling.poll()).answered == 1
    assert len(publisher.published[topics.HEALTHCODE_UPDATES]) == 1


def polling_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "kafka_bootstrap": "127.0.0.1:1",
        "database_url": "postgresql://nobody@127.0.0.1:1/none",
        "worker_ref_key": SecretStr("platform-poll-unit-tests-worker-ref-key"),
        "platform_poll_interval_seconds": 60,
        "health_code_platform_url": "https://platform.test",
        "health_code_platform_app_key": SecretStr("an-app-key-from-the-platform"),
        "id_encryption_keys": SecretStr(Fernet.generate_key().decode()),
    }
    return Settings(**(base | overrides))  # type: ignore[arg-type]


def test_without_id_encryption_keys_the_tracker_refuses_to_poll() -> None:
    with pytest.raises(SettingsError, match="RETURNLOOP_ID_ENCRYPTION_KEYS"):
        TrackerProcess(polling_settings(id_encryption_keys=None))


def test_without_an_app_key_the_tracker_refuses_to_poll() -> None:
    with pytest.raises(SettingsError, match="RETURNLOOP_HEALTH_CODE_PLATFORM_APP_KEY"):
        TrackerProcess(polling_settings(health_code_platform_app_key=None))


def test_polling_is_off_without_an_interval_or_a_url_and_then_needs_no_keys() -> None:
    assert poller_settings(polling_settings(platform_poll_interval_seconds=0)) is None
    assert poller_settings(polling_settings(health_code_platform_url="  ")) is None
    off = polling_settings(platform_poll_interval_seconds=0, id_encryption_keys=None)
    assert TrackerProcess(off).poller is None
    assert poller_settings(polling_settings()) is not None
