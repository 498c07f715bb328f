"""The one small interface between a Kafka client and the tracker's handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class InputRecord:
    """One consumed Kafka record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


# A handler takes a batch and returns once its effect is durable; only then
# are the batch's offsets committed. Raising means "not applied: retry".
BatchHandler = Callable[[Sequence[InputRecord]], Awaitable[None]]
