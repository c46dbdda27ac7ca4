"""Checked rows to the stored shape: canonical units (K, %, hPa), UTC, lineage, extras as JSON.

A missing measure (NaN after ``validate``, with MISSING_VALUES=null) is stored as NULL; a missing value
of another column (empty, or in NA_VALUES) is JSON null in ``extra``.

Pure and vectorized with pyarrow compute; the result is an Arrow table in ``sensor_readings``'
column order, ready to be serialized for COPY.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sensor_etl.core.columns import ColumnPlan
from sensor_etl.core.units import to_hpa, to_kelvin, to_percent
from sensor_etl.core.validate import Checked
from sensor_etl.core.values import Missing, empty, to_float

READINGS_COLUMNS = ("file_id", "line_no", "observed_at", "sensor_id", "temperature_k", "humidity_pct", "pressure_hpa", "extra")
METRIC_OF = {"temperature": "temperature_k", "humidity": "humidity_pct", "pressure": "pressure_hpa"}
_CONVERT = {"temperature": to_kelvin, "humidity": to_percent, "pressure": to_hpa}
_JSON_NUMBER = r"^[ \t]*-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?[ \t]*$"
_CONTROL = r"[\x00-\x1f]"


def transform(checked: Checked, plan: ColumnPlan, file_id: int | np.ndarray, missing: Missing) -> pa.Table:
    """The valid rows of a chunk as ``sensor_readings`` rows; ``file_id`` is one id, or one per row
    (a chunk combined from several files)."""
    rows = len(checked.lines)
    columns: dict[str, pa.Array] = {
        "file_id": pa.array(np.broadcast_to(np.asarray(file_id, dtype=np.int64), rows)),
        "line_no": pa.array(checked.lines, pa.int64()),
        "observed_at": pa.array(checked.observed_at.view(np.int64), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "sensor_id": checked.sensor_id.combine_chunks(),
    }
    for role, name in METRIC_OF.items():
        if role in checked.measures:
            values = _CONVERT[role](checked.measures[role], plan.units[role])
            absent = np.isnan(values)
            columns[name] = pa.array(values, pa.float64(), mask=absent if absent.any() else None)
        else:
            columns[name] = pa.nulls(rows, pa.float64())
    columns["extra"] = extras_json(checked.extras, [plan.headers[i] for i in plan.extras], rows, missing)
    return pa.table(columns)


def extras_json(extras: pa.Table, names: list[str], rows: int, missing: Missing) -> pa.Array:
    """One JSON object per row: numbers stay numbers, text stays text, missing values (empty, or in
    NA_VALUES) become null.

    Built as one element-wise string join over all columns (``{"k1":v1,"k2":v2}``), no row loop."""
    if not names:
        return pa.array(["{}"] * rows, pa.string())
    pieces: list[object] = []
    for index, (name, column) in enumerate(zip(names, extras.columns, strict=True)):
        pieces += [("{" if index == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":", _json_value(column, missing)]
    pieces.append("}")
    joined = pc.binary_join_element_wise(*pieces, "")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _json_value(column: pa.ChunkedArray, missing: Missing) -> pa.ChunkedArray:
    """The field as a JSON value: a JSON number as written (spaces around it are valid JSON), null when
    missing, else a string. A column of numbers without sentinels is the common case, and free."""
    is_number = pc.match_substring_regex(column, _JSON_NUMBER)
    all_numbers = pc.all(is_number).as_py()
    if all_numbers and not len(missing.sentinels):
        return column
    absent = missing.text_token(column) if not all_numbers else np.zeros(len(column), bool)
    if len(missing.sentinels):
        absent |= is_number.to_numpy(zero_copy_only=False) & missing.sentinel(to_float(column))
    if not all_numbers:
        absent |= empty(column)
    return pc.if_else(pa.array(absent), "null", pc.if_else(is_number, column, _json_string(column)))


def _json_string(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pc.any(pc.match_substring_regex(column, _CONTROL)).as_py():
        return pa.chunked_array([pa.array([json.dumps(v, ensure_ascii=False) for v in column.to_pylist()], pa.string())])
    escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise('"', escaped, '"', "")
