"""Await a condition with a timeout instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    within: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call ``probe`` until ``until(result)`` holds; fail with the last result on timeout."""
    deadline = time.monotonic() + within
    result = await probe()
    while not until(result):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}; last: {result!r}")
        await asyncio.sleep(interval)
        result = await probe()
    return result
