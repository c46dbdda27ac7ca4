"""Files as stations and loggers write them, made here (no downloads), each with the settings that load
it as docs/input.md ("Reading files") documents them, and the rows it must store.

- ``TOA5``: a Campbell Scientific CR1000 table (environment line, header, units, processing line);
- ``HEADERLESS``: a logger export with 8 lines of metadata and no header, semicolon-separated, in °F;
- ``ALIGNED``: a whitespace-aligned table under a station line;
- ``NOTES``: an office sensor export whose quoted notes run over several lines (CRLF).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class StationFile:
    name: str
    text: str
    settings: dict[str, str]  # the lines of its docs/input.md recipe
    preamble: str | None
    rows: list[
        tuple
    ]  # (line_no, observed_at UTC, sensor_id, temperature_k, humidity_pct, pressure_hpa, extra), values rounded to 6 decimals

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
        "SOURCE_TIMEZONE": "Etc/GMT-1",
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
        "SOURCE_TIMEZONE": "Etc/GMT+5",
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
