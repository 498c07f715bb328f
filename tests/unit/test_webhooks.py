"""Webhooks' pure rules (signature, matching, back-off) and the dispatcher over fakes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client import CollectorRegistry

from shared import topics
from shared.adapters.metrics import WebhookMetrics
from shared.domain.vocabulary import AlertKind
from shared.domain.webhooks import (
    EVENT_KINDS,
    Event,
    Registration,
    matches,
    payload,
    retry_delay,
    retry_schedule,
    signature,
    signature_valid,
)
from shared.service_layer.ports import InputRecord
from shared.service_layer.webhooks import (
    DueDelivery,
    NewDelivery,
    SendResult,
    WebhookDispatcher,
    delivery_id,
    event_of,
)

T0 = datetime(2020, 3, 1, 8, 0, tzinfo=UTC)


def registration(**changes: object) -> Registration:
    base = Registration(
        webhook_id="wh_0000000000000001",
        url="http://receiver.example/hook",
        event_kinds=frozenset({"fever_at_departure", "transition"}),
        enterprise_id=None,
        district=None,
        created_at=T0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def event(**changes: object) -> Event:
    base = Event(
        message_id="m-1",
        kind="fever_at_departure",
        enterprise_id="E1",
        published_at=T0 + timedelta(minutes=1),
        data={"worker_ref": "wr_1", "enterprise_id": "E1", "kind": "fever_at_departure"},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- signature ---------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() -> None:
    body = b'{"event":"transition"}'
    expected = hmac.new(b"s3cret-s3cret-s3cret", b"1583020800." + body, hashlib.sha256)
    assert signature("s3cret-s3cret-s3cret", "1583020800", body) == "v1=" + expected.hexdigest()


def test_a_receiver_accepts_a_fresh_signature_and_refuses_tampering_and_replays() -> None:
    body, secret, now = b'{"a":1}', "another-long-secret", 1_583_020_800
    header = signature(secret, str(now), body)
    assert signature_valid(secret, str(now), body, header, now=now + 10, tolerance_s=300)
    assert not signature_valid(secret, str(now), b'{"a":2}', header, now=now, tolerance_s=300)
    assert not signature_valid(
        "wrong-secret-xxxxx", str(now), body, header, now=now, tolerance_s=300
    )
    assert not signature_valid(secret, str(now), body, header, now=now + 301, tolerance_s=300)
    assert not signature_valid(secret, "soon", body, header, now=now, tolerance_s=300)


# --- matching ----------------------------------------------------------------------------


def test_a_registration_hears_its_kinds_only() -> None:
    assert matches(registration(), event(), None)
    assert matches(registration(), event(kind="transition"), None)
    assert not matches(registration(), event(kind="wrong_enterprise"), None)


def test_an_enterprise_filter_lets_only_that_enterprises_events_through() -> None:
    assert matches(registration(enterprise_id="E1"), event(), None)
    assert not matches(registration(enterprise_id="E2"), event(), None)
    assert not matches(registration(enterprise_id="E1"), event(enterprise_id=None), None)


def test_a_district_filter_goes_by_the_events_enterprise_district() -> None:
    assert matches(registration(district="Baoshan"), event(), "Baoshan")
    assert not matches(registration(district="Baoshan"), event(), "Jiading")
    assert not matches(registration(district="Baoshan"), event(), None)


def test_a_registration_hears_nothing_published_before_it_was_made() -> None:
    assert not matches(registration(), event(published_at=T0 - timedelta(seconds=1)), None)


def test_the_event_kinds_are_every_alert_kind_and_transition() -> None:
    assert set(EVENT_KINDS) == {kind.value for kind in AlertKind} | {"transition"}


def test_a_payload_never_carries_a_plain_id_number() -> None:
    data = {"worker_ref": "wr_1", "id_masked": "330302********1234", "id_number": "x"}
    assert payload(event(data=data)) == {"worker_ref": "wr_1", "id_masked": "330302********1234"}


# --- back-off ----------------------------------------------------------------------------


def test_the_back_off_doubles_up_to_its_maximum() -> None:
    assert retry_schedule(8, base_s=10, max_s=300) == [10, 20, 40, 80, 160, 300, 300]


def test_jitter_keeps_each_wait_between_half_and_all_of_its_step() -> None:
    assert retry_delay(3, base_s=10, max_s=3600, jitter=0.0) == 20
    assert retry_delay(3, base_s=10, max_s=3600, jitter=0.5) == 30
    assert retry_delay(3, base_s=10, max_s=3600, jitter=0.999) < 40


# --- records into events -----------------------------------------------------------------


def record(topic: str, body: dict[str, object], **changes: object) -> InputRecord:
    base = InputRecord(
        topic=topic,
        partition=1,
        offset=7,
        key=b"wr_1",
        value=orjson.dumps(body),
        timestamp_ms=int((T0 + timedelta(minutes=5)).timestamp() * 1000),
        headers=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_an_alert_message_is_an_event_of_its_kind_and_a_transition_of_kind_transition() -> None:
    alert = event_of(record(topics.ALERTS, {"kind": "trip_mismatch", "enterprise_id": "E9"}))
    assert alert is not None and (alert.kind, alert.enterprise_id) == ("trip_mismatch", "E9")
    transition = event_of(record(topics.TRANSITIONS, {"stage": "boarded"}))
    assert transition is not None and transition.kind == "transition"
    assert event_of(record(topics.ALERTS, {"no": "kind"})) is None
    assert event_of(record(topics.ALERTS, {}, value=b"not json")) is None


def test_the_message_id_is_the_outboxs_header_else_its_field_else_the_log_position() -> None:
    with_header = record(topics.ALERTS, {"kind": "x"}, headers=(("message_id", b"h-1"),))
    assert event_of(with_header).message_id == "h-1"  # type: ignore[union-attr]
    in_body = record(topics.ALERTS, {"kind": "x", "message_id": "b-1"})
    assert event_of(in_body).message_id == "b-1"  # type: ignore[union-attr]
    neither = record(topics.ALERTS, {"kind": "x"})
    assert event_of(neither).message_id == "loop.alerts-1-7"  # type: ignore[union-attr]


def test_a_delivery_id_is_the_same_for_the_same_message_and_registration() -> None:
    assert delivery_id("wh_a", "m-1") == delivery_id("wh_a", "m-1")
    assert delivery_id("wh_a", "m-1") != delivery_id("wh_b", "m-1")


# --- the dispatcher over fakes -----------------------------------------------------------


@dataclass
class Row:
    new: NewDelivery
    status: str = "pending"
    attempts: int = 0
    due_at: float = 0.0
    errors: list[str] = field(default_factory=list)


@dataclass
class FakeStore:
    """The WebhookStore port in memory; time is the test's ``now``."""

    registrations: list[Registration]
    districts: dict[str, str | None] = field(default_factory=dict)
    rows: dict[str, Row] = field(default_factory=dict)
    now: float = 0.0

    async def enabled_registrations(self) -> list[Registration]:
        return list(self.registrations)

    async def districts_of(self, enterprise_ids: Collection[str]) -> dict[str, str | None]:
        return {e: self.districts.get(e) for e in enterprise_ids}

    async def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> int:
        new = [d for d in deliveries if d.delivery_id not in self.rows]
        self.rows.update({d.delivery_id: Row(d, due_at=self.now) for d in new})
        return len(new)

    async def claim_due(
        self, *, limit: int, busy: Collection[str], lease_s: float
    ) -> list[DueDelivery]:
        claimed: dict[str, Row] = {}
        for row in self.rows.values():
            webhook = row.new.webhook_id
            if row.status == "pending" and row.due_at <= self.now and webhook not in busy:
                claimed.setdefault(webhook, row)
        urls = {r.webhook_id: r.url for r in self.registrations}
        for row in list(claimed.values())[:limit]:
            row.due_at = self.now + lease_s
        return [
            DueDelivery(
                row.new.delivery_id, row.new.webhook_id, urls[row.new.webhook_id],
                "fake-secret-0123456789", row.new.event_kind, row.new.body, row.attempts,
            )
            for row in list(claimed.values())[:limit]
        ]  # fmt: skip

    async def delivered(self, delivery_id: str, *, status_code: int | None) -> None:
        row = self.rows[delivery_id]
        row.status, row.attempts = "delivered", row.attempts + 1

    async def failed(
        self, delivery_id: str, *, status_code: int | None, error: str, retry_in_s: float | None
    ) -> None:
        row = self.rows[delivery_id]
        row.attempts += 1
        row.errors.append(error)
        if retry_in_s is None:
            row.status = "dead"
        else:
            row.due_at = self.now + retry_in_s


@dataclass
class FakeSender:
    """Answers per URL: a status code, or an error; a slow URL waits for ``release``."""

    answers: dict[str, int | str]
    slow: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> SendResult:
        if url in self.slow:
            await self.release.wait()
        self.sent.append((url, body, dict(headers)))
        answer = self.answers[url]
        return SendResult(answer) if isinstance(answer, int) else SendResult(None, answer)


def dispatcher(store: FakeStore, sender: FakeSender, **settings: float) -> WebhookDispatcher:
    return WebhookDispatcher(
        store=store,
        sender=sender,
        metrics=WebhookMetrics(CollectorRegistry()),
        max_attempts=int(settings.get("max_attempts", 3)),
        backoff_base_s=1.0,
        backoff_max_s=60.0,
        timeout_s=5.0,
        concurrency=int(settings.get("concurrency", 4)),
        clock=lambda: 1_583_020_800.0,
        jitter=lambda: 0.0,
    )


def fever_record(message_id: str, enterprise_id: str = "E1") -> InputRecord:
    body = {"worker_ref": "wr_1", "enterprise_id": enterprise_id, "kind": "fever_at_departure"}
    return record(topics.ALERTS, body, headers=(("message_id", message_id.encode()),))


async def settle(dispatcher: WebhookDispatcher) -> None:
    await asyncio.gather(*dispatcher.in_flight.values())


async def test_a_batch_read_twice_writes_each_delivery_once() -> None:
    store = FakeStore([registration(), registration(webhook_id="wh_2", enterprise_id="E2")])
    webhooks = dispatcher(store, FakeSender({}))
    await webhooks.handle([fever_record("m-1"), fever_record("m-2")])
    await webhooks.handle([fever_record("m-1"), fever_record("m-2")])
    assert sorted(row.new.message_id for row in store.rows.values()) == ["m-1", "m-2"]


async def test_a_delivery_is_signed_and_names_its_stable_id() -> None:
    store = FakeStore([registration()])
    sender = FakeSender({"http://receiver.example/hook": 204})
    webhooks = dispatcher(store, sender)
    await webhooks.handle([fever_record("m-1")])
    await webhooks.deliver_due()
    await settle(webhooks)
    [(_, body, headers)] = sender.sent
    assert headers["X-Returnloop-Delivery"] == delivery_id("wh_0000000000000001", "m-1")
    assert headers["X-Returnloop-Timestamp"] == "1583020800"
    assert headers["X-Returnloop-Signature"] == signature(
        "fake-secret-0123456789", "1583020800", body
    )
    assert orjson.loads(body)["data"]["worker_ref"] == "wr_1"
    assert [row.status for row in store.rows.values()] == ["delivered"]


async def test_a_failing_receiver_is_retried_after_the_back_off_then_dead() -> None:
    store = FakeStore([registration()])
    sender = FakeSender({"http://receiver.example/hook": 503})
    webhooks = dispatcher(store, sender, max_attempts=3)
    await webhooks.handle([fever_record("m-1")])
    [row] = store.rows.values()
    for step in (0.5, 1.0, 2.0):  # tries at 0, then after 0.5 s (1 s step, no jitter), 1 s
        assert await webhooks.deliver_due() == 1
        await settle(webhooks)
        assert await webhooks.deliver_due() == 0  # not due yet
        store.now += step
    assert (row.status, row.attempts, row.errors) == ("dead", 3, ["HTTP 503"] * 3)


async def test_a_slow_receiver_holds_one_slot_and_nobody_elses_deliveries() -> None:
    slow, fast = "http://slow.example/", "http://fast.example/"
    store = FakeStore([registration(url=slow), registration(webhook_id="wh_2", url=fast)])
    sender = FakeSender({slow: 200, fast: 200}, slow={slow})
    webhooks = dispatcher(store, sender, concurrency=2)
    await webhooks.handle([fever_record(f"m-{n}") for n in range(3)])
    for _ in range(3):
        await webhooks.deliver_due()
        await asyncio.sleep(0)  # let the attempts run
        await asyncio.sleep(0)
    fast_rows = [r for r in store.rows.values() if r.new.webhook_id == "wh_2"]
    assert [r.status for r in fast_rows] == ["delivered"] * 3
    assert [url for url, _, _ in sender.sent] == [fast] * 3  # the slow one still waits
    sender.release.set()
    await settle(webhooks)


async def test_an_event_of_another_district_is_not_delivered() -> None:
    store = FakeStore([registration(district="Baoshan")], districts={"E1": "Jiading"})
    webhooks = dispatcher(store, FakeSender({}))
    await webhooks.handle([fever_record("m-1")])
    assert store.rows == {}


@pytest.mark.parametrize("error", ["timed out after 5 s", "ConnectError: refused"])
async def test_a_receiver_that_cannot_be_reached_counts_as_a_failed_try(error: str) -> None:
    store = FakeStore([registration()])
    webhooks = dispatcher(store, FakeSender({"http://receiver.example/hook": error}))
    await webhooks.handle([fever_record("m-1")])
    await webhooks.deliver_due()
    await settle(webhooks)
    [row] = store.rows.values()
    assert (row.status, row.attempts, row.errors) == ("pending", 1, [error])
