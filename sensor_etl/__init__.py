"""sensor-etl: a folder of sensor CSV files in, clean PostgreSQL tables out, each file exactly once."""

__version__ = "0.1.0"
