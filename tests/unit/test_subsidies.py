"""The subsidy ledger: one verified (closed) loop, one subsidy at its journey's rate."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.domain.subsidies import LoopOnRecord, SubsidyRates, ledger
from shared.domain.vocabulary import Status, Travel

RATES = SubsidyRates(
    bus=Decimal(200), train=Decimal(350), flight=Decimal(800), self=Decimal("150.5")
)
CLOSED_AT = datetime(2020, 3, 3, 9, tzinfo=UTC)


def loop(status: Status = Status.CLOSED, travel=Travel.ORGANISED, mode="bus", enterprise="e1"):
    return LoopOnRecord("w_" + "a" * 24, enterprise, status, travel, mode, CLOSED_AT)


@pytest.mark.parametrize(("mode", "amount"), [("bus", 200), ("train", 350), ("flight", 800)])
def test_a_closed_organised_loop_earns_its_trips_mode_rate(mode, amount):
    [subsidy] = ledger([loop(mode=mode)], RATES)

    assert subsidy.amount_yuan == Decimal(amount)


def test_a_closed_self_arranged_loop_earns_the_self_rate():
    [subsidy] = ledger([loop(travel=Travel.SELF, mode=None)], RATES)

    assert subsidy.amount_yuan == Decimal("150.5")


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.CLOSED])
def test_only_a_closed_loop_is_eligible(status):
    assert ledger([loop(status=status)], RATES) == []


def test_an_organised_loop_on_a_trip_of_unknown_mode_earns_nothing():
    [subsidy] = ledger([loop(mode=None)], RATES)

    assert subsidy.amount_yuan == 0


def test_a_loop_with_no_enterprise_pays_no_enterprise():
    assert ledger([loop(enterprise=None)], RATES) == []


def test_rates_default_to_nothing():
    [subsidy] = ledger([loop()], SubsidyRates())

    assert subsidy.amount_yuan == 0
