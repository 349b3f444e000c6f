"""What the user reads during and after a run: the overall progress line and the summary.

Pure formatting; the flow and the command line pass in the numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keras_variants import runtime
from keras_variants.tracking.ui_links import mlflow_ui_for, pipeline_compare_page, ui_host_port


def progress_line(
    done: int, total: int, elapsed_seconds: float, failed: int = 0, left: float | None = None
) -> str:
    """'3/6 runs done, ~40 s left by this machine's earlier runs' (one run per variant and
    seed), the time left as :func:`seconds_left` expects it, or no estimate when it is None;
    runs that failed are counted apart ('2/6 runs done, 1 failed')."""
    finished = done + failed
    count = f"{done}/{total} runs done" + (f", {failed} failed" if failed else "")
    if finished >= total:
        return f"{count} in {elapsed_seconds:.0f} s"
    if left is None:
        return count
    return f"{count}, ~{left:.0f} s left by this machine's earlier runs"


def seconds_left(unfinished: Sequence[float | None], lanes: int) -> float | None:
    """The time the unfinished runs still need, from each one's expected training time
    (None: never measured here): their total shared by the lanes, but no less than the
    longest one. None when any is unmeasured: a guess from other runs' pace was off by
    minutes, since the CNN takes several times as long as a dense model."""
    if any(seconds is None for seconds in unfinished):
        return None
    times = [float(s) for s in unfinished if s is not None]
    return max([0.0, *times, sum(times) / max(lanes, 1)])


@dataclass
class Tally:
    """The runs of a pipeline as they end: how many are done and how many failed, and the
    time left by each unfinished run's expected time (``expected``: run name -> seconds,
    from this machine's earlier runs)."""

    names: list[str]
    lanes: int = 1
    expected: Mapping[str, float] = field(default_factory=dict)
    done: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        self.unfinished = list(self.names)
        self._lock = threading.Lock()  # each data set's runs end in a thread of their own

    def extend(self, names: Sequence[str], expected: Mapping[str, float]) -> None:
        """More runs to count (the next look of a study), with their expected times."""
        with self._lock:
            self.names = [*self.names, *names]
            self.unfinished += names
            self.expected = {**self.expected, **expected}

    def add(self, name: str, completed: bool, elapsed_seconds: float) -> str:
        """Count the run ``name`` as ended (completed, or failed); its progress line."""
        with self._lock:
            if completed:
                self.done += 1
            else:
                self.failed += 1
            self.unfinished.remove(name)
            left = seconds_left([self.expected.get(n) for n in self.unfinished], self.lanes)
            return progress_line(self.done, len(self.names), elapsed_seconds, self.failed, left)


@dataclass(frozen=True)
class SummaryRow:
    variant: str
    dataset: str
    validation_accuracy: float  # of the last epoch: what selects the challenger
    test_accuracy: float
    test_loss: float
    validation_loss_min_epoch: int | float  # a float: the mean over seeds
    run_id: str


def summary_table(rows: Sequence[SummaryRow]) -> list[str]:
    """One line per variant; ``*`` marks the best validation accuracy of each data set."""
    best = {
        dataset: max(
            (r for r in rows if r.dataset == dataset), key=lambda r: r.validation_accuracy
        ).variant
        for dataset in dict.fromkeys(r.dataset for r in rows)
    }
    width = max([15, *(len(r.variant) + 1 for r in rows)])  # sweep labels can be long
    lines = [
        f"{'variant':<{width}} {'val acc':>8} {'test acc':>9} {'test loss':>10} "
        f"{'min val loss at epoch':>22}  run id"
    ]
    for r in rows:
        name = r.variant + ("*" if best[r.dataset] == r.variant else "")
        lines.append(
            f"{name:<{width}} {r.validation_accuracy:>8.4f} {r.test_accuracy:>9.4f} "
            f"{r.test_loss:>10.4f} {_epoch(r.validation_loss_min_epoch):>22}  {r.run_id}"
        )
    return lines


def mlflow_ui_lines(
    tracking_uri: str, experiments: Mapping[str, str], pipeline_id: str
) -> list[str]:
    """How to open the runs in MLflow's UI: the command for a local store, then one link
    per data set (``experiments``: data set -> experiment id) that opens this pipeline
    run's variants side by side, best test accuracy first."""
    base = mlflow_ui_for(tracking_uri)
    if tracking_uri.startswith(("http://", "https://")):
        lines = ["MLflow UI:"]
    else:
        host, port = ui_host_port(base)
        mlflow = runtime.tool_command("mlflow")
        lines = [
            f"MLflow UI: {mlflow} ui --backend-store-uri {tracking_uri} --host {host} --port {port}"
        ]
    lines += [
        f"  {name} variants: {pipeline_compare_page(base, eid, pipeline_id)}"
        for name, eid in experiments.items()
    ]
    return lines


def _epoch(value: int | float) -> str:
    """An epoch as the report's table prints it: a run's whole, a mean over seeds to one
    decimal."""
    return f"{value:.1f}" if isinstance(value, float) else str(value)
