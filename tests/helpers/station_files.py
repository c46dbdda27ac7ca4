"""Files as real stations, loggers and data services write them, made here (no downloads). Deterministic.

Each comes with the settings docs/input.md documents for it: as ``*_SETTINGS`` for the files of
"Dates and times" and missing values (TMY, METAR, radiation network, New York DST), and in a
``StationFile`` (settings and the exact rows it must store) for those of "Reading files":

- ``TOA5``: a Campbell Scientific CR1000 table (environment line, header, units, processing line);
- ``HEADERLESS``: a logger export with 8 lines of metadata and no header, semicolon-separated, in °F;
- ``ALIGNED``: a whitespace-aligned table under a station line;
- ``NOTES``: an office sensor export whose quoted notes run over several lines (CRLF).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_NA = "NA,N/A,n/a,#N/A,NaN,nan,null,NULL"

# -- a typical-meteorological-year file (TMY3 layout: a metadata line, then the header) --------------
TMY_METADATA = '744860,"NEW YORK J F KENNEDY INT\'L AR",NY,-5.0,40.650,-73.800,7'  # station, name, state, UTC offset, lat, lon, m
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
    lines = [TMY_METADATA, TMY_HEADER]
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


# -- files of "Reading files": where the header, units and data are -------------------------------
@dataclass(frozen=True)
class StationFile:
    name: str
    text: str
    settings: dict[str, str]  # the lines of its docs/input.md recipe
    preamble: str | None
    rows: list[tuple]  # (line_no, observed_at UTC, sensor_id, temperature_k, humidity_pct, pressure_hpa, extra) as stored

    @property
    def content(self) -> bytes:
        return self.text.encode()


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


TOA5_ENVIRONMENT = '"TOA5","CR1000_Roof","CR1000","12345","CR1000.Std.32.03","CPU:met_roof.CR1","53231","Met10"'
TOA5 = StationFile(
    "CR1000_Roof_Met10.dat.csv",
    "\r\n".join(
        [
            TOA5_ENVIRONMENT,
            '"TIMESTAMP","RECORD","BattV_Min","AirTC_Avg","RH","BP_mbar","WS_ms_Avg","Rain_mm_Tot"',
            '"TS","RN","Volts","Deg C","%","mbar","meters/second","mm"',
            '"","","Min","Avg","Smp","Avg","Avg","Tot"',
            '"2024-03-01 00:10:00",4410,12.61,3.25,87.4,961.2,1.24,0',
            '"2024-03-01 00:20:00",4411,12.61,3,88.1,961.3,0.98,0.2',
            '"2024-03-01 00:30:00",4412,12.6,-0.75,90,961.1,2.5,0',
        ]
    )
    + "\r\n",
    {
        "COLUMN_MAP": "AirTC_Avg:temperature,BP_mbar:pressure",
        "SOURCE_TIMEZONE": "+01:00",
        "DEFAULT_SENSOR_ID": "CR1000_Roof",
    },
    TOA5_ENVIRONMENT,
    [
        (
            5,
            _utc(2024, 2, 29, 23, 10),
            "CR1000_Roof",
            276.4,
            87.4,
            961.2,
            {"RECORD": 4410, "BattV_Min": 12.61, "WS_ms_Avg": 1.24, "Rain_mm_Tot": 0},
        ),
        (
            6,
            _utc(2024, 2, 29, 23, 20),
            "CR1000_Roof",
            276.15,
            88.1,
            961.3,
            {"RECORD": 4411, "BattV_Min": 12.61, "WS_ms_Avg": 0.98, "Rain_mm_Tot": 0.2},
        ),
        (
            7,
            _utc(2024, 2, 29, 23, 30),
            "CR1000_Roof",
            272.4,
            90.0,
            961.1,
            {"RECORD": 4412, "BattV_Min": 12.6, "WS_ms_Avg": 2.5, "Rain_mm_Tot": 0},
        ),
    ],
)

HEADERLESS_PREAMBLE = "\n".join(
    [
        "Logger: HOBO MX2301A",
        "Serial: 20934711",
        "Site: North field, mast 2",
        "Deployed: 2024-02-28 14:00",
        "Time zone: UTC-05:00",
        "Units: temperature degF, RH %",
        "Interval: 15 min",
        "------------------------------------------",
    ]
)
HEADERLESS = StationFile(
    "north_field_20934711.csv",
    HEADERLESS_PREAMBLE
    + "\n"
    + "\n".join(["2024-03-01 00:00:00;41.9;88.2", "2024-03-01 00:15:00;41.0;89.5", "2024-03-01 00:30:00;32.0;93.0"])
    + "\n",
    {
        "HEADER_ROW": "none",
        "COLUMN_NAMES": "timestamp,temperature,humidity",
        "DATA_ROW": "9",
        "CSV_DELIMITER": "semicolon",
        "TEMPERATURE_UNIT": "F",
        "SOURCE_TIMEZONE": "-05:00",
        "DEFAULT_SENSOR_ID": "hobo-20934711",
    },
    HEADERLESS_PREAMBLE,
    [
        (9, _utc(2024, 3, 1, 5, 0), "hobo-20934711", 278.65, 88.2, None, {}),
        (10, _utc(2024, 3, 1, 5, 15), "hobo-20934711", 278.15, 89.5, None, {}),
        (11, _utc(2024, 3, 1, 5, 30), "hobo-20934711", 273.15, 93.0, None, {}),
    ],
)

ALIGNED_STATION = " Station: Table Mountain (TBL)    Lat 40.125  Lon -105.237  Elevation 1689 m"
ALIGNED = StationFile(
    "tbl_2024_061.csv",
    "\n".join(
        [
            ALIGNED_STATION,
            " Date_Time             Temp     RH    Pressure   Dir",
            " 2024-03-01T00:00      -3.4   62.1      833.4    270",
            " 2024-03-01T00:01      -3.5   62.4      833.4    268",
            "",
            "\t2024-03-01T00:02\t  -3.5\t62.0\t833.5\t 265",
        ]
    )
    + "\n",
    {"CSV_DELIMITER": "whitespace"},
    ALIGNED_STATION,
    [
        (3, _utc(2024, 3, 1, 0, 0), "default", 269.75, 62.1, 833.4, {"Dir": 270}),
        (4, _utc(2024, 3, 1, 0, 1), "default", 269.65, 62.4, 833.4, {"Dir": 268}),
        (6, _utc(2024, 3, 1, 0, 2), "default", 269.65, 62.0, 833.5, {"Dir": 265}),
    ],
)

NOTE = 'Sensor moved to the shelf.\r\nReadings may be off by "0.5 °C" for an hour.'
NOTES = StationFile(
    "office-3_2024-03-01.csv",
    "\r\n".join(
        [
            "timestamp,sensor_id,temperature,humidity,pressure,note",
            "2024-03-01T08:00:00+01:00,office-3,21.4,38.2,1012.3,",
            '2024-03-01T08:15:00+01:00,office-3,21.6,38,1012.2,"' + NOTE.replace('"', '""') + '"',
            "2024-03-01T08:30:00+01:00,office-3,21.9,37.7,1012.1,ok",
        ]
    )
    + "\r\n",
    {},
    None,
    [
        (2, _utc(2024, 3, 1, 7, 0), "office-3", 294.55, 38.2, 1012.3, {"note": None}),
        (3, _utc(2024, 3, 1, 7, 15), "office-3", 294.75, 38.0, 1012.2, {"note": NOTE}),
        (5, _utc(2024, 3, 1, 7, 30), "office-3", 295.05, 37.7, 1012.1, {"note": "ok"}),
    ],
)

STATION_FILES = (TOA5, HEADERLESS, ALIGNED, NOTES)
