"""Webhooks' rules: which registrations an event goes to, how a delivery is signed, and
when a failed one is tried again. Plain functions, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from shared.domain.vocabulary import AlertKind

# A loop.transitions message is the event kind "transition"; a loop.alerts message is
# its alert kind (raised or closed).
TRANSITION = "transition"
EVENT_KINDS = (*(kind.value for kind in AlertKind), TRANSITION)

SIGNATURE_VERSION = "v1"
# Fields a delivery never carries, whatever the message held.
PERSONAL_FIELDS = frozenset({"id_number", "code", "health_code_id", "ssc_card_no"})


@dataclass(frozen=True)
class Registration:
    """A receiver's URL, what it wants to hear about, and where from."""

    webhook_id: str
    url: str
    event_kinds: frozenset[str]
    enterprise_id: str | None
    district: str | None
    created_at: datetime


@dataclass(frozen=True)
class Event:
    """One loop.transitions or loop.alerts message, as a webhook sees it."""

    message_id: str
    kind: str
    enterprise_id: str | None
    published_at: datetime
    data: dict[str, object]


def matches(registration: Registration, event: Event, district: str | None) -> bool:
    """Whether ``registration`` asked for ``event`` (``district``: its enterprise's).

    A registration hears only of events published after it was made, so registering
    does not replay the topics' history at the receiver.
    """
    return (
        event.kind in registration.event_kinds
        and registration.enterprise_id in (None, event.enterprise_id)
        and registration.district in (None, district)
        and event.published_at >= registration.created_at
    )


def recipients(
    registrations: Iterable[Registration], event: Event, district: str | None
) -> list[Registration]:
    """The registrations ``event`` goes to."""
    return [r for r in registrations if matches(r, event, district)]


def payload(event: Event) -> dict[str, object]:
    """The message's fields a receiver may see: worker_ref and masked IDs, never a plain ID."""
    return {key: value for key, value in event.data.items() if key not in PERSONAL_FIELDS}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def signature_valid(
    secret: str, timestamp: str, body: bytes, header: str, *, now: float, tolerance_s: float
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent (replay)."""
    try:
        fresh = abs(now - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(signature(secret, timestamp, body), header)


def retry_delay(attempts: int, *, base_s: float, max_s: float, jitter: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones (``jitter`` in [0, 1)).

    Exponential (base, 2 base, 4 base, ... up to max) with "equal jitter": half the
    step is fixed, half random, so receivers coming back are not hit all at once.
    """
    step = min(max_s, base_s * 2.0 ** max(0, attempts - 1))
    return step / 2 + step / 2 * jitter


def retry_schedule(max_attempts: int, *, base_s: float, max_s: float) -> list[float]:
    """The longest wait before each retry (tries 2 .. max_attempts)."""
    return [
        retry_delay(attempts, base_s=base_s, max_s=max_s, jitter=1.0)
        for attempts in range(1, max_attempts)
    ]
