"""Spreading files over parallel tasks by size, never splitting one: a file is one transaction."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

# What a file costs besides its bytes, in bytes of work: on this machine a 100-row file takes about
# 17 ms per worker (117 files/s with WORKERS=2, docs/performance.md shape c), the time a big file
# spends on about 150 KB (182,000 rows/s at 48 bytes a row, shape b).
FILE_COST_BYTES = 150_000


def balance(sizes: Sequence[int], groups: int) -> list[list[int]]:
    """Indexes of ``sizes`` in at most ``groups`` groups of nearly equal work (bytes plus a fixed cost
    per file), heaviest group first so the longest tasks start first.

    Longest-processing-time-first: each file, largest first, joins the lightest group so far; the
    heaviest group is then at most 4/3 of the best possible one (Graham, 1969)."""
    count = min(groups, len(sizes))
    if count <= 0:
        return []
    heap = [(0, group) for group in range(count)]
    members: list[list[int]] = [[] for _ in range(count)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        work, group = heapq.heappop(heap)
        members[group].append(index)
        heapq.heappush(heap, (work + sizes[index] + FILE_COST_BYTES, group))
    totals = {group: work for work, group in heap}
    return [members[group] for group in sorted(range(count), key=lambda g: (-totals[g], g))]
