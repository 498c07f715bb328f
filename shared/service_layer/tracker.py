"""The tracker's service layer: intake and apply with poison isolation, sweep, publish.

intake  scans.{kind}, healthcode.updates -> validate, pseudonymise; scans are applied
        in the same batch (one PostgreSQL transaction, which also writes the
        transitions and alerts to the outbox) and published on scans.accepted
        (keyed by worker_ref) for downstream readers; colour updates go to
        healthcode.accepted; rejects to scans.rejected (reason + original bytes)
apply   healthcode.accepted, dispositions (and scans.accepted when replayed after a
        restore: ``returnloop replay-accepted``) -> one transaction per batch
sweep   every few seconds: workers past a deadline -> overdue alerts (outbox too)
relay   the outbox -> loop.transitions, loop.alerts (``shared.service_layer.relay``)

One Kafka hop per scan: validation and apply share the batch, so a scan is
consumed, decoded and batched once. Two processes may hold partitions carrying
scans of one worker (producers key input as they like); the apply transaction
locks the batch's workers in one order, so one worker's state is never written
by two transactions at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared import topics
from shared.contract import Rejected
from shared.domain.model import Rules
from shared.identity import Pseudonymiser
from shared.service_layer import handlers
from shared.service_layer.intake import codes_named, dead_letter, validate_records
from shared.service_layer.messages import (
    AcceptedDisposition,
    AcceptedHealthUpdate,
    AcceptedScan,
)
from shared.service_layer.ports import (
    CodeDirectory,
    InputRecord,
    LoopStore,
    Publisher,
    RecordRefused,
)
from shared.service_layer.relay import Relay

if TYPE_CHECKING:
    from shared.adapters.metrics import Metrics

logger = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Tracker:
    """Handlers of the tracker's streams, independent of how records are consumed."""

    def __init__(
        self,
        *,
        store: LoopStore,
        publisher: Publisher,
        pseudonymiser: Pseudonymiser,
        rules: Rules,
        metrics: Metrics,
        codes: CodeDirectory | None = None,
        relay: Relay | None = None,
        fault_point: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        # Publishes what the apply transactions wrote to the outbox; woken after each.
        self.relay = relay
        # Where the fault suite kills the process (after an apply commit).
        self.fault_point = fault_point or (lambda point: None)
        # Without a directory no code resolves: such inputs are dead-lettered as unknown_code.
        self.codes = codes
        self.publisher = publisher
        self.pseudonymiser = pseudonymiser
        self.rules = rules
        self.metrics = metrics

    async def handle_intake(self, records: Sequence[InputRecord]) -> None:
        """Validate input, apply the accepted scans, publish accepted and rejected; return
        when the apply transaction has committed and every message is durable."""
        codes = codes_named(records)
        resolved = await self.codes.resolve_codes(codes) if codes and self.codes else {}
        result = validate_records(records, self.pseudonymiser, now=_utcnow(), resolved=resolved)
        source_of = {(record.topic, record.partition, record.offset): record for record in records}
        self.metrics.add_counts(
            self.metrics.scans_total,
            Counter((item.scan.kind.value, "accepted") for item in result.scans),
        )
        await asyncio.gather(
            self._apply_and_publish(result.scans, source_of),
            self.publisher.publish(
                topics.HEALTHCODE_ACCEPTED,
                [(item.key(), item.to_bytes(), None) for item in result.updates],
            ),
            self.publisher.publish(
                topics.REJECTED,
                [(dl.original_key, dl.original_value, dl.headers()) for dl in result.rejected],
            ),
        )
        for dl in result.rejected:
            kind = topics.KIND_BY_TOPIC.get(dl.source_topic, "unknown")
            self.metrics.scans_total.labels(kind, "rejected").inc()
            self.metrics.rejected_total.labels(dl.reason).inc()
            logger.warning(
                "input rejected",
                extra={
                    "reason": dl.reason,
                    "source_topic": dl.source_topic,
                    "source_partition": dl.source_partition,
                    "source_offset": dl.source_offset,
                },
            )
        self.metrics.batches_total.labels("intake", "ok").inc()

    async def _apply_and_publish(
        self,
        scans: list[AcceptedScan],
        source_of: dict[tuple[str, int, int], InputRecord],
    ) -> None:
        """Apply validated scans, then publish them on ``scans.accepted`` (but the poison)."""
        if not scans:
            return
        sources = {}
        for item in scans:
            assert item.source is not None  # validate_records sets it
            position = item.source
            sources[item.scan.scan_id] = source_of[
                (position.topic, position.partition, position.offset)
            ]
        poison = await self._apply_scans(scans, sources)
        refused = {id(item) for item in poison}
        await self.publisher.publish(
            topics.ACCEPTED,
            [(item.key(), item.to_bytes(), None) for item in scans if id(item) not in refused],
        )

    async def handle_apply(self, records: Sequence[InputRecord]) -> None:
        """Apply accepted scans, colour updates and dispositions (one transaction each),
        then publish."""
        scans: list[AcceptedScan] = []
        updates: list[AcceptedHealthUpdate] = []
        dispositions: list[AcceptedDisposition] = []
        broken: list[InputRecord] = []
        source_of: dict[str, InputRecord] = {}
        for record in records:
            try:
                if record.topic == topics.HEALTHCODE_ACCEPTED:
                    updates.append(AcceptedHealthUpdate.from_bytes(record.value or b""))
                elif record.topic == topics.DISPOSITIONS:
                    dispositions.append(AcceptedDisposition.from_bytes(record.value or b""))
                else:
                    item = AcceptedScan.from_bytes(record.value or b"")
                    scans.append(item)
                    source_of[item.scan.scan_id] = record
            except (ValueError, KeyError, TypeError):
                broken.append(record)
        if broken:
            now = _utcnow()
            problem = Rejected("invalid_field", "an internal message could not be decoded")
            await self.publisher.publish(
                topics.REJECTED,
                [
                    (dl.original_key, dl.original_value, dl.headers())
                    for dl in (dead_letter(r, problem, now) for r in broken)
                ],
            )
        transitions: list[handlers.WorkerTransition] = []
        if scans:
            await self._apply_scans(scans, source_of)
        if updates:
            transitions.extend(
                await handlers.apply_health_updates(
                    self.store, updates, rules=self.rules, now=_utcnow()
                )
            )
            self.metrics.health_updates_total.labels("applied").inc(len(updates))
        if dispositions:
            transitions.extend(
                await handlers.apply_dispositions(
                    self.store, dispositions, rules=self.rules, now=_utcnow()
                )
            )
        self._announce(transitions)
        self.metrics.batches_total.labels("apply", "ok").inc()

    async def _apply_scans(
        self, scans: list[AcceptedScan], source_of: dict[str, InputRecord]
    ) -> list[AcceptedScan]:
        """Apply scans in one transaction (poison isolated and dead-lettered from its
        source record); count the outcomes; return the poison."""
        applied, new_ids, poison = await self._apply_isolating(scans)
        committed = time.time()
        refused = {id(item) for item in poison}
        outcomes: Counter[tuple[str, str]] = Counter()
        for item in scans:
            if id(item) in refused:
                outcome = "rejected"
            elif item.scan.scan_id in new_ids:
                outcome = "applied"
                self.metrics.scan_to_state_seconds.observe(
                    max(0.0, committed - item.received_at.timestamp())
                )
            else:
                outcome = "duplicate"
            outcomes[item.scan.kind.value, outcome] += 1
        self.metrics.add_counts(self.metrics.scans_total, outcomes)
        if poison:
            await self._dead_letter_poison([source_of[item.scan.scan_id] for item in poison])
        self._announce(applied)
        return poison

    async def _apply_isolating(
        self, scans: list[AcceptedScan]
    ) -> tuple[list[handlers.WorkerTransition], set[str], list[AcceptedScan]]:
        """Apply a batch; if the data itself is refused, find the refused scans by halving.

        A scan the database can never store must not block its partition: it is
        returned as poison (to be dead-lettered). Any other error propagates, and
        the whole batch is retried.
        """
        try:
            transitions, new_ids = await handlers.apply_scans(
                self.store, scans, rules=self.rules, now=_utcnow()
            )
            return transitions, new_ids, []
        except RecordRefused:
            if len(scans) == 1:
                logger.exception(
                    "scan refused by the database; dead-lettering it",
                    extra={"scan_id": scans[0].scan.scan_id, "worker_ref": scans[0].worker_ref},
                )
                return [], set(), list(scans)
        middle = len(scans) // 2
        first = await self._apply_isolating(scans[:middle])
        second = await self._apply_isolating(scans[middle:])
        return first[0] + second[0], first[1] | second[1], first[2] + second[2]

    async def _dead_letter_poison(self, records: Sequence[InputRecord]) -> None:
        now = _utcnow()
        problem = Rejected("unprocessable", "the database refused this scan")
        letters = [dead_letter(record, problem, now) for record in records]
        await self.publisher.publish(
            topics.REJECTED, [(dl.original_key, dl.original_value, dl.headers()) for dl in letters]
        )
        for letter in letters:
            self.metrics.rejected_total.labels(letter.reason).inc()

    async def sweep(self) -> int:
        """Raise overdue alerts for every worker past a deadline; return how many were looked at."""
        total = 0
        while True:
            transitions = await handlers.sweep_overdue(
                self.store, rules=self.rules, now=_utcnow(), limit=1000
            )
            self._announce(transitions)
            total += len(transitions)
            if len(transitions) < 1000:
                return total

    def _announce(self, transitions: Sequence[handlers.WorkerTransition]) -> None:
        """Count the alerts raised and wake the relay: the messages are in the outbox."""
        if not transitions:
            return
        for item in transitions:
            for alert in item.transition.raised:
                self.metrics.alerts_total.labels(alert.kind.value).inc()
        self.fault_point("apply_committed")
        if self.relay is not None:
            self.relay.wake.set()
