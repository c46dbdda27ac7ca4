"""The problem table: one row per broken rule (line, column, raw value, rule, message), and how a
raw value is shown in it. Shared by the row rules and the date detection."""

from __future__ import annotations

import numpy as np
import pandas as pd

PROBLEM_COLUMNS = ["line", "column", "value", "rule", "message"]
MAX_SHOWN_CHARS = 200  # a reported value is cut here, so a 10 MB field does not become a 10 MB report


def shown(values: list) -> np.ndarray:
    """Values as a report shows them: cut at MAX_SHOWN_CHARS, saying how long they really were."""
    text = pd.Series(np.asarray(values, dtype=object), dtype=object)
    length = text.str.len()
    long = (length > MAX_SHOWN_CHARS).to_numpy()
    if long.any():
        text[long] = text[long].str.slice(0, MAX_SHOWN_CHARS) + "… (" + length[long].astype(str) + " characters)"
    return text.to_numpy(dtype=object)


_NO_PROBLEMS = pd.DataFrame({name: pd.Series(dtype="int64" if name == "line" else object) for name in PROBLEM_COLUMNS})


def no_problems() -> pd.DataFrame:
    """The empty problem table (shared: callers only read it)."""
    return _NO_PROBLEMS
