"""Benchmark of the sensor-etl daemon against plain ``psql \\copy``; run ``python bench/run.py``."""
