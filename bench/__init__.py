"""Benchmark of the sensor-etl daemon against plain ``psql \\copy``; run ``python -m bench.run``."""
