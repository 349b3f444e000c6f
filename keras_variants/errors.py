"""Errors that tell the user what was wrong, where, and what to do."""

from __future__ import annotations

import errno


class VariantsError(Exception):
    """Base class for every error this tool reports to the user without a traceback."""


def what_was_registered(gated: list[str] | tuple[str, ...] = ()) -> str:
    """What a failed run registered: nothing, but where a data set's gate (which runs as
    soon as its own trials are done) had run before the failure."""
    if not gated:
        return "nothing was registered"
    return f"nothing was registered but by the gate of {' and '.join(gated)}, which had run"


class DataError(VariantsError):
    """A data file is missing, unreadable or malformed.

    The message always names the file, the field (array or key) and the problem.
    """

    def __init__(self, file: str, field: str | None, problem: str, hint: str = "") -> None:
        self.file, self.field, self.problem, self.hint = file, field, problem, hint
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {problem}" + (f". {hint}" if hint else ""))


class DataValidationError(VariantsError):
    """One or more Great Expectations checks failed; ``failures`` lists them one per line."""

    def __init__(self, failures: list[str], results_path: str | None = None) -> None:
        self.failures, self.results_path = failures, results_path
        lines = ["data validation failed:", *(f"  - {f}" for f in failures)]
        if results_path:
            lines.append(f"full Great Expectations results: {results_path}")
        super().__init__("\n".join(lines))


class InputError(VariantsError):
    """An input to a served model (a review text, an image) cannot be used; says which."""


class ConfigError(VariantsError):
    """A configuration value (profile, variant name, option) is not valid."""


class TrackingStoreError(VariantsError):
    """The MLflow tracking store cannot be reached or written."""


class ArtifactStoreError(VariantsError):
    """A run's artifacts (models, reports) could not be written, e.g. the disk is full."""


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota on it) has no room left."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class PrefectServerError(VariantsError):
    """The Prefect server that ``variants schedule`` serves against stopped answering."""


class ClusterError(VariantsError):
    """The Dask cluster a run trains on was lost under it (its scheduler, or its workers)."""
