"""One field's text as a value: a number, or missing (empty, a token of NA_VALUES, a numeric sentinel).

A token of NA_VALUES that reads as a finite number (``-9999``, ``-9900.0``, ``1e4``) is a *sentinel*:
it matches fields that read as the same number (``-9999`` matches ``-9999.0``). Every other token
(``NA``, ``NaN``, ``null``...) matches a field whose text, spaces trimmed, is exactly the token.
Vectorized: masks over whole Arrow columns, with the cheap test first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def to_float(text: pa.ChunkedArray) -> np.ndarray:
    """float64 with NaN where the text is not a number (fast path: Arrow's cast when all parse)."""
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(pd.Series(text.to_pandas()).str.strip(), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def empty(text: pa.ChunkedArray) -> np.ndarray:
    """Fields that are empty once spaces are trimmed."""
    return pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0).to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class Missing:
    """The tokens of NA_VALUES: as written, the non-numeric ones, and the numeric sentinels."""

    written: pa.Array  # every token, matched as text in text columns (sensor id, timestamp)
    texts: pa.Array  # the non-numeric tokens, matched as text in numeric columns
    sentinels: np.ndarray  # float64: the numeric tokens, matched by value in numeric columns

    def token(self, text: pa.ChunkedArray) -> np.ndarray:
        """Fields whose trimmed text is one of the tokens, as written (a text column has no number to compare)."""
        return self._is_in(text, self.written)

    def text_token(self, text: pa.ChunkedArray) -> np.ndarray:
        """Fields whose trimmed text is a non-numeric token (``NA``, ``NaN``...)."""
        return self._is_in(text, self.texts)

    def sentinel(self, values: np.ndarray) -> np.ndarray:
        """Numbers equal to a sentinel."""
        if len(self.sentinels) == 0:
            return np.zeros(len(values), bool)
        return np.isin(values, self.sentinels)

    @staticmethod
    def _is_in(text: pa.ChunkedArray, tokens: pa.Array) -> np.ndarray:
        if len(tokens) == 0:
            return np.zeros(len(text), bool)
        return pc.is_in(pc.utf8_trim_whitespace(text), value_set=tokens).to_numpy(zero_copy_only=False)


@cache
def missing_tokens(tokens: tuple[str, ...]) -> Missing:
    """``Missing`` for the tokens of NA_VALUES (cached: built once per distinct setting)."""
    numbers = {token: _finite(token) for token in tokens}
    return Missing(
        written=pa.array(list(tokens), pa.string()),
        texts=pa.array([token for token, number in numbers.items() if number is None], pa.string()),
        sentinels=np.array([number for number in numbers.values() if number is not None], dtype=np.float64),
    )


def _finite(token: str) -> float | None:
    """The token's number when it reads as a finite one (a sentinel), else None."""
    try:
        number = float(token)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
