"""Files as real stations and data services write them, made here (no downloads). Deterministic.

Each comes with the settings docs/input.md documents for it ("Station files"), as ``*_SETTINGS``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

DEFAULT_NA = "NA,N/A,n/a,#N/A,NaN,nan,null,NULL"

# -- a typical-meteorological-year file (TMY3 layout, without its metadata line) ---------------------
TMY_HEADER = (
    "Date (MM/DD/YYYY),Time (HH:MM),ETR (W/m^2),GHI (W/m^2),Dry-bulb (C),Dew-point (C),RHum (%),Pressure (mbar),"
    "Wdir (degrees),Wspd (m/s),Lprecip depth (mm)"
)
TMY_SETTINGS = {"SOURCE_TIMEZONE": "-05:00", "NA_VALUES": f"{DEFAULT_NA},-9900", "MISSING_VALUES": "null"}
TMY_MISSING = {"humidity": (10, 30), "pressure": (20, 30)}  # row indexes whose measure is the -9900 sentinel


def tmy_rows() -> list[tuple[str, str, float, int, int]]:
    """(date, time, dry-bulb °C, RHum %, pressure mbar) of the 48 hours of 1-2 January 1988, hours 01:00 to 24:00."""
    rows = []
    for i in range(48):
        day, hour = divmod(i, 24)
        rows.append((f"01/{day + 1:02d}/1988", f"{hour + 1:02d}:00", round(-5.0 + (i % 10) * 0.3, 1), 70 + i % 20, 1010 + i % 5))
    return rows


def tmy_csv() -> str:
    """Hours written 01:00..24:00 (24:00 is midnight at the end of the day), -9900 for missing, CRLF."""
    lines = [TMY_HEADER]
    for i, (date, time, dry_bulb, rhum, pressure) in enumerate(tmy_rows()):
        humidity = "-9900" if i in TMY_MISSING["humidity"] else str(rhum)
        hpa = "-9900.0" if i in TMY_MISSING["pressure"] else str(pressure)  # a sentinel matches by value, however written
        precip = "0" if i % 6 == 0 else "-9900"
        lines.append(
            f"{date},{time},0,{i % 7 * 10},{dry_bulb},{dry_bulb - 3:.1f},{humidity},{hpa},{i * 10 % 360},{i % 5 * 0.5:.1f},{precip}"
        )
    return "\r\n".join(lines) + "\r\n"


# -- an hourly METAR export of several airports (the riem / IEM ASOS layout), °F, NA gaps -----------
METAR_HEADER = "station,valid,lon,lat,tmpf,dwpf,relh,drct,sknt,alti,mslp,gust,wxcodes,metar"
METAR_SETTINGS = {
    "COLUMN_MAP": "valid:timestamp,tmpf:temperature,relh:humidity,mslp:pressure",
    "TEMPERATURE_UNIT": "F",
    "MISSING_VALUES": "null",
}
METAR_STATIONS = {"AMW": (-93.6190, 41.9900), "DSM": (-93.6563, 41.5340), "CID": (-91.7108, 41.8847)}
METAR_CELSIUS = (3.9, 5.0, 1.1, -2.8, -3.3, 0.6)  # tmpf is written as these °C readings in °F, as METAR reports do


def metar_rows() -> list[dict[str, str]]:
    """Six hours at three airports, stations interleaved as the export sorts them by time."""
    rows = []
    for hour, celsius in enumerate(METAR_CELSIUS):
        for s, (station, (lon, lat)) in enumerate(METAR_STATIONS.items()):
            i = hour * 3 + s
            t = celsius + s
            tmpf = f"{t * 9 / 5 + 32:.2f}"
            rows.append(
                {
                    "station": station,
                    "valid": f"2016-01-01 {hour:02d}:54",
                    "lon": f"{lon:.4f}",
                    "lat": f"{lat:.4f}",
                    "tmpf": "NA" if i == 7 else tmpf,
                    "dwpf": f"{(t - 3) * 9 / 5 + 32:.2f}",
                    "relh": "NA" if i in (4, 7) else f"{60 + i * 1.5:.2f}",
                    "drct": f"{(i * 30) % 360:.1f}",
                    "sknt": f"{5 + i % 4:.1f}",
                    "alti": f"{30.05 + i / 100:.2f}",
                    "mslp": "NA" if i % 4 == 1 else f"{1015.2 + i / 10:.1f}",
                    "gust": "NA" if i != 5 else "22.0",
                    "wxcodes": "NA" if i != 9 else "-SN",
                    "metar": f"K{station} 01{hour:02d}54Z AUTO 33011KT 10SM CLR A{3005 + i} RMK AO2",
                }
            )
    return rows


def metar_csv() -> str:
    return "\n".join([METAR_HEADER, *(",".join(row.values()) for row in metar_rows())]) + "\n"


# -- a radiation-network table (SURFRAD-like): year, day of year, hour, minute in numeric columns -----
RADIATION_HEADER = "year,jday,hour,min,dt,zen,dw_solar,uw_solar,temp,rh,pressure"
RADIATION_SETTINGS = {"NA_VALUES": f"{DEFAULT_NA},-9999.9", "MISSING_VALUES": "null"}
RADIATION_MISSING_TEMPERATURE = 3  # row index whose temp is -9999.9


def radiation_rows() -> list[tuple[int, int, int, int, float, float, float]]:
    """(year, day of year, hour, minute, temp °C, rh %, pressure mb): 2020, day 59 23:57 to day 60 (29 February) 00:02."""
    start = datetime(2020, 2, 28, 23, 57)
    rows = []
    for i in range(6):
        at = start + timedelta(minutes=i)
        rows.append((at.year, at.timetuple().tm_yday, at.hour, at.minute, round(-1.2 + i * 0.1, 1), 81.5 - i, round(980.4 + i / 10, 1)))
    return rows


def radiation_csv() -> str:
    lines = [RADIATION_HEADER]
    for i, (year, doy, hour, minute, temp, rh, pressure) in enumerate(radiation_rows()):
        shown = "-9999.9" if i == RADIATION_MISSING_TEMPERATURE else f"{temp:.1f}"
        lines.append(f"{year},{doy},{hour},{minute},{hour + minute / 60:.3f},95.2,-9999.9,0.0,{shown},{rh:.1f},{pressure:.1f}")
    return "\n".join(lines) + "\n"


# -- local time in New York across both daylight-saving changes of 2024 ------------------------------
DST_SETTINGS = {"SOURCE_TIMEZONE": "America/New_York"}
DST_FALL_LINE = 8  # the line of 2024-11-03 01:00, which New York clocks show twice


def new_york_csv() -> str:
    """Hourly local readings of a logger that follows daylight-saving time: on 10 March its clock jumps
    from 01:59 to 03:00, so there is no 02:00; on 3 November it shows 01:00 twice, and this export kept
    one row for it."""
    spring = [f"2024-03-10 {hour:02d}:00" for hour in (0, 1, 3, 4, 5)]
    fall = [f"2024-11-03 {hour:02d}:00" for hour in (0, 1, 2, 3)]
    lines = ["timestamp,temperature", *(f"{at},{10 + i}.5" for i, at in enumerate(spring + fall))]
    return "\n".join(lines) + "\n"
