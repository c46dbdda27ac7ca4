"""Input files for tests, in the three shapes the daemon must read. Deterministic."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

SEED_HEADER = "date,p,T,Tpot,Tdew,rh,VPmax,VPact,VPdef,sh,H2OC,rho,wv,max. wv,wd,rain,raining,SWDR,PAR,max. PAR,Tlog"
STATION_HEADER = (
    '"Date Time","p (mbar)","T (degC)","Tpot (K)","Tdew (degC)","rh (%)","VPmax (mbar)","VPact (mbar)","VPdef (mbar)",'
    '"sh (g/kg)","H2OC (mmol/mol)","rho (g/m**3)","wv (m/s)","max. wv (m/s)","wd (deg)"'
)
MULTI_HEADER = "timestamp,sensor_id,temperature,humidity,pressure"


def seed_rows(count: int, start: datetime = datetime(2020, 1, 1, 0, 10), seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        at = start + timedelta(minutes=10 * i)
        t = round(float(rng.uniform(-20, 35)), 2)
        p = round(float(rng.uniform(950, 1050)), 2)
        rh = round(float(rng.uniform(10, 100)), 1)
        rest = ",".join(f"{v:.2f}" for v in rng.uniform(0, 10, 14))
        lines.append(f"{at:%Y-%m-%d %H:%M:%S},{p},{t},{t + 273.5:.2f},{t - 2:.2f},{rh},{rest},{i % 7}")
    return lines


def seed_csv(count: int = 10, **kwargs: object) -> str:
    return "\n".join([SEED_HEADER, *seed_rows(count, **kwargs)]) + "\n"


def station_csv(count: int = 10, start: datetime = datetime(2009, 1, 1, 0, 10)) -> str:
    rng = np.random.default_rng(2)
    lines = [STATION_HEADER]
    for i in range(count):
        at = start + timedelta(minutes=10 * i)
        t = round(float(rng.uniform(-10, 30)), 2)
        rest = ",".join(f"{v:.2f}" for v in rng.uniform(0, 10, 8))
        lines.append(f"{at:%d.%m.%Y %H:%M:%S},{996.52 + i / 100:.2f},{t},{t + 273.0:.2f},{t - 3:.2f},{93.3 - i / 10:.1f},{rest},152.3")
    return "\r\n".join(lines) + "\r\n"


def multi_csv(sensors: int = 3, per_sensor: int = 4, start: datetime = datetime(2024, 1, 1), offset: str = "Z", seed: int = 3) -> str:
    rng = np.random.default_rng(seed)
    lines = [MULTI_HEADER]
    for i in range(per_sensor):
        for s in range(sensors):
            at = start + timedelta(minutes=15 * i)
            lines.append(
                f"{at:%Y-%m-%dT%H:%M:%S}{offset},sensor-{s + 1:02d},{rng.uniform(-5, 30):.3f},{rng.uniform(20, 90):.2f},{rng.uniform(980, 1040):.2f}"
            )
    return "\n".join(lines) + "\n"
