#!/usr/bin/env python3
"""sensor-etl entry point. ``python etl_pipeline.py --help`` lists the commands; README explains the rest."""

import sys

from sensor_etl.cli import main

if __name__ == "__main__":
    sys.exit(main())
