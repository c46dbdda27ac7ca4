"""Unit names and conversions to the canonical units stored in PostgreSQL (K, %, hPa).

Vectorized: every function takes and returns numpy arrays (or scalars). A converted value is rounded
to ``DECIMALS`` places, so it carries no binary noise: 39.02 °F is stored as 277.05 K, not
277.04999999999995 (6 places are a millionth of a kelvin, a percent or a hectopascal: far finer than
any sensor). A value already in the stored unit is stored as read.
"""

from __future__ import annotations

import numpy as np

TEMPERATURE_UNITS = ("C", "F", "K")
PRESSURE_UNITS = ("hPa", "mbar", "kPa", "Pa")
HUMIDITY_UNITS = ("percent", "fraction")

# header suffix (lowercased, without spaces) -> unit
TEMPERATURE_SUFFIXES = {
    "c": "C",
    "degc": "C",
    "°c": "C",
    "celsius": "C",
    "f": "F",
    "degf": "F",
    "°f": "F",
    "fahrenheit": "F",
    "k": "K",
    "kelvin": "K",
}
PRESSURE_SUFFIXES = {"hpa": "hPa", "mbar": "mbar", "mb": "mbar", "kpa": "kPa", "pa": "Pa"}
HUMIDITY_SUFFIXES = {
    "%": "percent",
    "pct": "percent",
    "percent": "percent",
    "rh%": "percent",  # units rows write RH% or %RH
    "%rh": "percent",
    "fraction": "fraction",
    "frac": "fraction",
}

# how a header names each unit (the suggestion of a unit hint: temp_F, p_kPa)
HEADER_SUFFIX = {
    "C": "C",
    "F": "F",
    "K": "K",
    "hPa": "hPa",
    "mbar": "mbar",
    "kPa": "kPa",
    "Pa": "Pa",
    "percent": "pct",
    "fraction": "fraction",
}
DECIMALS = 6

_PRESSURE_TO_HPA = {"hPa": 1.0, "mbar": 1.0, "kPa": 10.0, "Pa": 0.01}


def to_kelvin(values: np.ndarray, unit: str) -> np.ndarray:
    if unit == "C":
        return np.round(values + 273.15, DECIMALS)
    if unit == "F":
        return np.round((values - 32.0) * (5.0 / 9.0) + 273.15, DECIMALS)
    return values


def celsius_to(unit: str, celsius: float) -> float:
    """A bound given in °C expressed in the file's unit, so raw values can be range-checked as read."""
    if unit == "F":
        return celsius * 9.0 / 5.0 + 32.0
    if unit == "K":
        return celsius + 273.15
    return celsius


def to_hpa(values: np.ndarray, unit: str) -> np.ndarray:
    factor = _PRESSURE_TO_HPA[unit]
    return values if factor == 1.0 else np.round(values * factor, DECIMALS)


def hpa_to(unit: str, hpa: float) -> float:
    return hpa / _PRESSURE_TO_HPA[unit]


def to_percent(values: np.ndarray, unit: str) -> np.ndarray:
    return np.round(values * 100.0, DECIMALS) if unit == "fraction" else values


def percent_to(unit: str, percent: float) -> float:
    return percent / 100.0 if unit == "fraction" else percent
