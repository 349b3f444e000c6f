"""Prefect flows: wiring only; the work happens in tasks and the functions they wrap."""
