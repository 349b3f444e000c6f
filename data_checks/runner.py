"""Validate check tables with Great Expectations and explain every failure in one line."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from great_expectations.expectations.expectation import Expectation

from data_checks.tables import CheckTable

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ValidationOutcome:
    success: bool
    failures: list[str]  # "mnist.npz: y_train (label): labels are digits 0-9; ..." per failure
    checked: int  # expectations evaluated
    results: dict[str, dict]  # table -> GX validation result as JSON


def validate_tables(
    tables: list[CheckTable], suites: dict[str, list[Expectation]]
) -> ValidationOutcome:
    """Run each table's suite in an ephemeral GX context (nothing written to disk)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("keras-variants")
    failures: list[str] = []
    results: dict[str, dict] = {}
    checked = 0
    for table in tables:
        key = f"{table.file} {table.name}"
        asset = source.add_dataframe_asset(key)
        batch = asset.add_batch_definition_whole_dataframe("all rows").get_batch(
            batch_parameters={"dataframe": table.frame}
        )
        suite = gx.ExpectationSuite(name=key)
        for expectation in suites[table.suite]:
            suite.add_expectation(expectation.copy(deep=True))
        result = batch.validate(suite, result_format="SUMMARY")
        results[key] = result.to_json_dict()
        checked += len(result.results)
        failures += [describe_failure(table, r) for r in result.results if not r.success]
    return ValidationOutcome(not failures, failures, checked, results)


def describe_failure(table: CheckTable, result) -> str:
    """``file: field (column): reason; what was found`` for one failed expectation."""
    config = result.expectation_config
    kwargs = config.kwargs
    column = kwargs.get("column") or kwargs.get("column_A") or ""
    field = table.fields.get(column, "")
    rows = (result.result or {}).get("partial_unexpected_index_list") or []
    if "*" in field and rows and "split" in table.frame:
        # Split tables have one row per split: name the split's own array.
        field = field.replace("*", str(table.frame["split"].iloc[rows[0]]))
    where = f"{field} ({column})" if field and column else column or table.name
    reason = (config.meta or {}).get("why", config.type)
    return f"{table.file}: {where}: {reason} [{table.name}, {config.type}]; {_found(result)}"


def _found(result) -> str:
    info = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        return "could not be checked: " + str(result.exception_info.get("exception_message"))
    if "unexpected_count" in info and info.get("partial_unexpected_list") is not None:
        values = ", ".join(_short(v) for v in info["partial_unexpected_list"][:MAX_EXAMPLES])
        rows = info.get("partial_unexpected_index_list") or []
        first = f" (first at row {rows[0]})" if rows else ""
        total = info.get("element_count", "?")
        return f"{info['unexpected_count']} of {total} rows fail, e.g. {values}{first}"
    if "observed_value" in info:
        return f"found {_short(info['observed_value'])}"
    if "details" in info:
        return f"found {json.dumps(info['details'], default=str)[:200]}"
    return "failed"


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    try:
        return f"{float(value):.4g}" if not isinstance(value, int | str | bool) else str(value)
    except (TypeError, ValueError):
        return str(value)[:60]


def write_results(outcome: ValidationOutcome, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"success": outcome.success, "failures": outcome.failures, **outcome.results}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path
