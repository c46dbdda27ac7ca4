"""Pure functions on Arrow/pandas/numpy: no files, no database, no clock. Shared by every runner."""
