"""Webhooks: loop transitions and alerts turned into signed deliveries, and delivered.

Two halves, both in the webhooks process (never in the tracker, so a slow or dead
receiver cannot slow the tracker down):

- ``handle``: a batch of ``loop.transitions`` / ``loop.alerts`` records → one
  delivery row per matching registration, written idempotently (one row per
  registration and message id) before the batch's offsets are committed. A
  restart re-reads at most the last batch and writes nothing twice.
- ``deliver_forever``: due deliveries are claimed (a lease, so a crash mid-attempt
  means one more try, never none) and POSTed, at most one in flight per
  registration and ``concurrency`` in all, so one slow receiver holds one slot
  and nobody else's deliveries. A failure is tried again after an exponential
  back-off with jitter; after ``max_attempts`` the delivery is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import orjson

from shared import topics
from shared.domain.webhooks import (
    TRANSITION,
    Event,
    Registration,
    payload,
    recipients,
    retry_delay,
    signature,
)
from shared.service_layer.ports import InputRecord

if TYPE_CHECKING:
    from shared.adapters.metrics import WebhookMetrics

logger = logging.getLogger(__name__)

# Delivery ids are derived, so the same message to the same registration is always
# the same delivery (and receivers can drop a repeat by X-Returnloop-Delivery).
_DELIVERY_NAMESPACE = uuid.UUID("6f1c3c3e-5d0e-4d43-9a57-2f4f0b8f1a11")
MESSAGE_ID_HEADER = "message_id"
# How long past its timeout a claimed attempt may take before another claim may retry it.
LEASE_MARGIN_S = 30.0


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: str
    webhook_id: str
    message_id: str
    event_kind: str
    body: bytes


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery: what to send where, and how many tries it has had."""

    delivery_id: str
    webhook_id: str
    url: str
    secret: str
    event_kind: str
    body: bytes
    attempts: int


@dataclass(frozen=True)
class SendResult:
    """A receiver's answer: its status code, or why there was none."""

    status_code: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300

    @property
    def problem(self) -> str:
        return self.error or f"HTTP {self.status_code}"


class WebhookStore(Protocol):
    """Registrations and the delivery log (PostgreSQL: ``shared.adapters.postgres.webhooks``)."""

    async def enabled_registrations(self) -> list[Registration]: ...

    async def districts_of(self, enterprise_ids: Collection[str]) -> dict[str, str | None]: ...

    async def add_deliveries(self, deliveries: Sequence[NewDelivery]) -> int:
        """Insert the deliveries not there yet (by registration and message id); how many."""
        ...

    async def claim_due(
        self, *, limit: int, busy: Collection[str], lease_s: float
    ) -> list[DueDelivery]:
        """Up to ``limit`` due deliveries of enabled registrations not in ``busy``, one per
        registration (its oldest), each leased for ``lease_s``."""
        ...

    async def delivered(self, delivery_id: str, *, status_code: int | None) -> None: ...

    async def failed(
        self,
        delivery_id: str,
        *,
        status_code: int | None,
        error: str,
        retry_in_s: float | None,
    ) -> None:
        """Record a failed try: retried after ``retry_in_s``, or dead (``None``)."""
        ...


class WebhookSender(Protocol):
    """POSTs one delivery (``shared.adapters.webhooks_http``); never raises for the
    receiver's failures, it returns them."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> SendResult: ...


def message_id_of(record: InputRecord, body: Mapping[str, object]) -> str:
    """The message's stable id (the outbox's header or field), else its log position."""
    for name, value in record.headers:
        if name == MESSAGE_ID_HEADER and value:
            return value.decode()
    found = body.get("message_id")
    if isinstance(found, str) and found:
        return found
    return f"{record.topic}-{record.partition}-{record.offset}"


def event_of(record: InputRecord) -> Event | None:
    """The record as a webhook event; None when it is not a transition or an alert."""
    if record.value is None:
        return None
    try:
        body = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    if record.topic == topics.TRANSITIONS:
        kind = TRANSITION
    elif record.topic == topics.ALERTS and isinstance(body.get("kind"), str):
        kind = body["kind"]
    else:
        return None
    enterprise_id = body.get("enterprise_id")
    return Event(
        message_id=message_id_of(record, body),
        kind=kind,
        enterprise_id=enterprise_id if isinstance(enterprise_id, str) else None,
        published_at=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
        data=body,
    )


def delivery_id(webhook_id: str, message_id: str) -> str:
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, f"{webhook_id}/{message_id}"))


def delivery_for(registration: Registration, event: Event) -> NewDelivery:
    """The delivery of ``event`` to ``registration``, its body fixed once (what is signed)."""
    identifier = delivery_id(registration.webhook_id, event.message_id)
    body = {
        "delivery_id": identifier,
        "message_id": event.message_id,
        "event": event.kind,
        "published_at": event.published_at.isoformat(),
        "data": payload(event),
    }
    return NewDelivery(
        delivery_id=identifier,
        webhook_id=registration.webhook_id,
        message_id=event.message_id,
        event_kind=event.kind,
        body=orjson.dumps(body),
    )


def signed_headers(due: DueDelivery, *, timestamp: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "returnloop-webhooks/1",
        "X-Returnloop-Event": due.event_kind,
        "X-Returnloop-Delivery": due.delivery_id,
        "X-Returnloop-Timestamp": timestamp,
        "X-Returnloop-Signature": signature(due.secret, timestamp, due.body),
    }


class WebhookDispatcher:
    """Matches events to registrations and delivers them (see the module's docstring)."""

    def __init__(
        self,
        *,
        store: WebhookStore,
        sender: WebhookSender,
        metrics: WebhookMetrics,
        max_attempts: int,
        backoff_base_s: float,
        backoff_max_s: float,
        timeout_s: float,
        concurrency: int,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sender = sender
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.clock = clock
        self.jitter = jitter
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self._wakeup = asyncio.Event()

    async def handle(self, records: Sequence[InputRecord]) -> None:
        """Write the deliveries a batch of transitions and alerts makes (a BatchHandler)."""
        events = []
        for record in records:
            event = event_of(record)
            if event is None:
                self.metrics.events_total.labels("ignored").inc()
                logger.warning(
                    "not a transition or an alert; skipped",
                    extra={"topic": record.topic, "offset": record.offset},
                )
            else:
                events.append(event)
        if not events:
            return
        registrations = await self.store.enabled_registrations()
        if not registrations:
            self.metrics.events_total.labels("unmatched").inc(len(events))
            return
        districts = await self.store.districts_of(
            {event.enterprise_id for event in events if event.enterprise_id is not None}
        )
        deliveries = []
        for event in events:
            district = districts.get(event.enterprise_id) if event.enterprise_id else None
            matched = recipients(registrations, event, district)
            self.metrics.events_total.labels("matched" if matched else "unmatched").inc()
            deliveries += [delivery_for(registration, event) for registration in matched]
        if deliveries:
            await self.store.add_deliveries(deliveries)
            self._wakeup.set()

    async def deliver_due(self) -> int:
        """Start attempts for due deliveries in the free slots; how many were started."""
        free = self.concurrency - len(self.in_flight)
        if free <= 0:
            return 0
        claimed = await self.store.claim_due(
            limit=free, busy=set(self.in_flight), lease_s=self.timeout_s + LEASE_MARGIN_S
        )
        for due in claimed:
            task = asyncio.create_task(self._attempt(due), name=f"webhook {due.webhook_id}")
            self.in_flight[due.webhook_id] = task
            task.add_done_callback(functools.partial(self._done, due.webhook_id))
        return len(claimed)

    def _done(self, webhook_id: str, _: asyncio.Task[None]) -> None:
        self.in_flight.pop(webhook_id, None)
        self._wakeup.set()

    async def _attempt(self, due: DueDelivery) -> None:
        headers = signed_headers(due, timestamp=str(int(self.clock())))
        started = time.monotonic()
        result = await self.sender.post(due.url, due.body, headers, self.timeout_s)
        self.metrics.attempt_seconds.observe(time.monotonic() - started)
        attempts = due.attempts + 1
        log = {"webhook_id": due.webhook_id, "delivery_id": due.delivery_id, "attempt": attempts}
        try:
            if result.ok:
                await self.store.delivered(due.delivery_id, status_code=result.status_code)
                self.metrics.deliveries_total.labels("delivered").inc()
            elif attempts >= self.max_attempts:
                await self.store.failed(
                    due.delivery_id,
                    status_code=result.status_code,
                    error=result.problem,
                    retry_in_s=None,
                )
                self.metrics.deliveries_total.labels("dead").inc()
                logger.warning("webhook delivery dead", extra={**log, "error": result.problem})
            else:
                delay = retry_delay(
                    attempts,
                    base_s=self.backoff_base_s,
                    max_s=self.backoff_max_s,
                    jitter=self.jitter(),
                )
                await self.store.failed(
                    due.delivery_id,
                    status_code=result.status_code,
                    error=result.problem,
                    retry_in_s=delay,
                )
                self.metrics.deliveries_total.labels("failed").inc()
                logger.info(
                    "webhook delivery failed; will retry",
                    extra={**log, "error": result.problem, "retry_in_s": round(delay, 3)},
                )
        except Exception:
            # The lease runs out and the delivery is tried again: at least once.
            logger.exception("could not record a webhook attempt", extra=log)

    async def deliver_forever(self, stopping: asyncio.Event, *, poll_s: float = 0.5) -> None:
        """Claim and deliver until ``stopping`` is set; in-flight attempts are then cancelled
        (their leases expire and they are tried again)."""
        try:
            while not stopping.is_set():
                self._wakeup.clear()
                try:
                    await self.deliver_due()
                except Exception:
                    logger.exception("could not claim due webhook deliveries; will try again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=poll_s)
        finally:
            for task in list(self.in_flight.values()):
                task.cancel()
            await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
