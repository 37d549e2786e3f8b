"""Fine-tuning as a service: /v1/files and /v1/fine_tuning/jobs, the SQLite database behind them, and
the worker that trains one job at a time in a `buxiban train` child process."""
