"""The outside world, one module per thing touched: files, the database, the embedded server, reports."""
