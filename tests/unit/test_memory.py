"""Freed memory goes back to the OS when the tracker trims (glibc's malloc_trim)."""

from __future__ import annotations

import os
import sys

import pytest

from shared.adapters.memory import trim_memory

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="malloc_trim is glibc's",
)
def test_pages_freed_between_live_blocks_are_returned_by_a_trim() -> None:
    # 64 MiB in 1 KiB blocks (above pymalloc's 512 bytes: from malloc's heap), then
    # every block freed but one in 64: the heap cannot shrink from its top, and most
    # of its pages are wholly free between the ones still in use.
    blocks = [os.urandom(1024) for _ in range(65536)]
    kept = blocks[::64]
    del blocks
    before = rss_bytes()
    assert trim_memory() is True
    after = rss_bytes()
    assert before - after > 32 * 2**20, (before, after)
    assert len(kept) == 1024
