"""Prefect tasks: thin wrappers that name, retry and cache the plain functions they call."""
