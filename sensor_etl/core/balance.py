"""Spreading files over parallel tasks by size, never splitting one (a file is one transaction), each
task a run of consecutive files of the listing (oldest first)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

# What a file costs besides its bytes, in bytes of work: on this machine a 100-row file takes about
# 17 ms per worker (117 files/s with WORKERS=2, docs/performance.md shape c), the time a big file
# spends on about 150 KB (182,000 rows/s at 48 bytes a row, shape b).
FILE_COST_BYTES = 150_000


def balance(sizes: Sequence[int], groups: int) -> list[list[int]]:
    """Indexes of ``sizes`` in at most ``groups`` runs of consecutive files whose largest work (bytes
    plus a fixed cost per file) is as small as it can be, in listing order.

    Why runs and not the files dealt by size (largest first into the lightest task, which balances a
    little better): the overlap check of each load reads the files already loaded on its sensors'
    days that end after it starts. Tasks that each take their own stretch of time, oldest first,
    meet few such files; tasks holding files from all over the backlog meet most of them. Measured:
    5,000 files of 100 rows on local[2] took 381.8 s (the server 373 s of CPU) dealt by size."""
    count = min(groups, len(sizes))
    if count <= 0:
        return []
    ends = list(accumulate(size + FILE_COST_BYTES for size in sizes))

    def runs(limit: int) -> list[int]:
        """Where the runs end when each takes files while its work stays within ``limit`` (never less
        than the largest file's); stops counting past ``count`` runs."""
        cuts: list[int] = []
        while (start := cuts[-1] if cuts else 0) < len(ends) and len(cuts) <= count:
            cuts.append(bisect_right(ends, (ends[start - 1] if start else 0) + limit, lo=start))
        return cuts

    low, high = max(b - a for a, b in zip([0, *ends], ends, strict=False)), ends[-1]
    while low < high:  # the least limit that needs at most ``count`` runs
        middle = (low + high) // 2
        if len(runs(middle)) <= count:
            high = middle
        else:
            low = middle + 1
    cuts = runs(low)
    return [list(range(start, end)) for start, end in zip([0, *cuts], cuts, strict=False)]
