"""Transport subsidies, paid only on verified loops. Pure, no I/O.

A closed loop earns its enterprise the rate of the way the worker travelled:
the mode of their trip (bus, train, flight), or ``self`` for a self-arranged
journey. The ledger is derived from the loop states whenever it is read, so
replays, duplicates and rebuilds cannot pay a loop twice, and a loop that
re-opens drops out until it closes again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from shared.domain.vocabulary import Status, Travel

MODES = ("bus", "train", "flight")


@dataclass(frozen=True)
class SubsidyRates:
    """Yuan per worker for each way of travel."""

    bus: Decimal = Decimal(0)
    train: Decimal = Decimal(0)
    flight: Decimal = Decimal(0)
    self: Decimal = Decimal(0)

    def for_journey(self, travel: Travel, mode: str | None) -> Decimal:
        """The rate of a journey; an organised one on a trip of unknown mode earns nothing."""
        if travel is Travel.SELF:
            return self.self
        rate: Decimal = getattr(self, mode) if mode in MODES else Decimal(0)
        return rate


@dataclass(frozen=True)
class LoopOnRecord:
    """What the ledger reads of one worker's loop."""

    worker_ref: str
    enterprise_id: str | None
    status: Status
    travel: Travel
    mode: str | None
    closed_at: datetime | None


@dataclass(frozen=True)
class Subsidy:
    loop: LoopOnRecord
    amount_yuan: Decimal


def ledger(loops: Iterable[LoopOnRecord], rates: SubsidyRates) -> list[Subsidy]:
    """One subsidy per closed loop, at its journey's rate; nothing for any other status."""
    return [
        Subsidy(loop, rates.for_journey(loop.travel, loop.mode))
        for loop in loops
        if loop.status is Status.CLOSED and loop.enterprise_id is not None
    ]
