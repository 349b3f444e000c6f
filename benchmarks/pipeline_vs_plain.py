"""Benchmark: the full pipeline against the plain Keras reference script, side by side.

Usage (inside the project's virtual environment):

    python benchmarks/pipeline_vs_plain.py [--data-dir ../shared/data] [--rounds 2] [--study]

Runs, alternating, ``variants run --profile full`` (in a fresh working folder, with an empty
task cache) and ``../shared/bench/bare_keras.py``; then a second pipeline run with unchanged
inputs (it reuses the first run's results), a cold ``--profile smoke`` run (a new folder:
no trials, no MLflow store; the data checked before, by the warm-up), the same with nothing
cached at all, and, with ``--study``, the 5-seed ``--study lecture`` in a fresh folder.
Full runs start in a new folder with an empty task cache (data read and checked again).
Prints wall time, CPU time, peak resident memory of the largest process, time outside
training by stage, per-variant training time and test accuracy, the pipeline/plain ratios
and every target beside its figure, and writes them to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Measurement:
    label: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float  # of the largest process in the tree (wait4's ru_maxrss)
    train_s: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    overhead_s: float | None = None  # wall time outside the training phase
    stages: dict[str, float] = field(default_factory=dict)  # outside training, by stage
    started_at: float = 0.0  # time.time() at the start


def measure(
    label: str, args: list[str], cwd: Path, env: dict[str, str], both: bool = False
) -> tuple[Measurement, str]:
    """Run ``args`` to completion; wall, CPU and peak RSS come from wait4 on that child.
    Returns its standard output (with ``both``, followed by its standard error: the log
    lines that mark the stages)."""
    started, started_at = time.perf_counter(), time.time()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_chunks: list[bytes] = []

    # Drain both pipes while waiting so a chatty child never blocks on a full pipe.
    def drain(stream, sink):
        for chunk in iter(lambda: stream.read(65536), b""):
            sink.append(chunk)

    err_chunks: list[bytes] = []
    readers = [
        threading.Thread(target=drain, args=(proc.stdout, out_chunks)),
        threading.Thread(target=drain, args=(proc.stderr, err_chunks)),
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    for reader in readers:
        reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = b"".join(out_chunks).decode(errors="replace")
    if proc.returncode != 0:
        err = b"".join(err_chunks).decode(errors="replace")
        raise SystemExit(f"{label} failed (exit {proc.returncode}):\n{err[-4000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    if both:
        out += b"".join(err_chunks).decode(errors="replace")
    return Measurement(label, wall, cpu, usage.ru_maxrss / 1024, started_at=started_at), out


def plain(data_dir: Path, env: dict[str, str]) -> Measurement:
    script = data_dir.parent / "bench" / "bare_keras.py"
    m, out = measure("plain", [sys.executable, str(script), str(data_dir)], REPO, env)
    for line in out.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            m.train_s[row["model"]] = row["fit_s"]
            m.accuracy[row["model"]] = row["test_acc"]
    return m


def pipeline(
    label: str, workdir: Path, data_dir: Path, profile: str, env, *extra: str, cold: bool = True
) -> Measurement:
    args = [str(BIN / "variants"), "run", "--profile", profile, "--data-dir", str(data_dir)]
    args += extra
    # cold: Prefect's task cache in the working folder, so a new folder reads and checks the
    # data again; otherwise the Prefect home's, where the warm-up checked these files (as
    # for someone who ran the tool before on the same data).
    cache = {"PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(workdir / "prefect-results")}
    m, out = measure(label, args, workdir, env | (cache if cold else {}), both=True)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    latest = client.search_runs(
        experiments, "tags.role = 'pipeline'", order_by=["attributes.start_time DESC"]
    )[0].data.tags["keras_variants.pipeline_id"]
    runs = client.search_runs(
        experiments,
        f"tags.role = 'variant' and tags.`keras_variants.pipeline_id` = '{latest}'",
    )
    for run in runs:
        name = run.data.tags["variant"]
        m.train_s[name] = round(run.data.metrics["training_seconds"], 1)
        m.accuracy[name] = round(run.data.metrics["test/accuracy"], 4)
    if runs:
        training_phase = (
            max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)
        ) / 1000
        m.overhead_s = m.wall_s - training_phase
        first = min(r.info.start_time for r in runs) / 1000
        last = max(r.info.end_time for r in runs) / 1000
        m.stages = stages(out, m.started_at, m.started_at + m.wall_s, first, last)
    return m


STAGE_LINES = {  # the log line that ends each stage outside training
    "start-up": "Beginning flow run",
    "gate": "Task run 'promote-",
    "report": "report written to",
}


def stages(out: str, start: float, end: float, first: float, last: float) -> dict[str, float]:
    """Seconds of each stage outside training, from the command's own timestamped log lines:
    start-up (to the flow's first line), data (to the first trial), the gate (after the
    last trial), the report, and the end (summary, stopping the servers)."""
    day = datetime.fromtimestamp(start).astimezone()
    seen: dict[str, float] = {}
    for line in out.splitlines():
        for stage, marker in STAGE_LINES.items():
            if marker in line and line[:2].isdigit():
                clock = datetime.strptime(line[:12], "%H:%M:%S.%f").time()
                at = datetime.combine(day.date(), clock, day.tzinfo).timestamp()
                seen[stage] = max(seen.get(stage, at), at)
    flow = seen.get("start-up", start)
    gate = seen.get("gate", last)
    report = seen.get("report", gate)
    return {
        "start-up": flow - start,
        "data": first - flow,
        "gate": gate - last,
        "report": report - gate,
        "end": end - report,
    }


def machine() -> str:
    import psutil

    memory = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    python = platform.python_version()
    return f"{os.cpu_count()} cores, {memory:.0f} GiB RAM, {cpu}, Python {python}"


def table(rows: list[Measurement]) -> str:
    variants = sorted({v for m in rows for v in m.accuracy})
    head = ["run", "wall s", "CPU s", "peak RSS MB", "non-training s (by stage)"]
    head += [f"{v} s / acc" for v in variants]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for m in rows:
        cells = [m.label, f"{m.wall_s:.1f}", f"{m.cpu_s:.1f}", f"{m.peak_rss_mb:.0f}"]
        by_stage = " + ".join(f"{k} {v:.1f}" for k, v in m.stages.items())
        cells.append("-" if m.overhead_s is None else f"{m.overhead_s:.1f} ({by_stage})")
        cells += [
            f"{m.train_s[v]:.1f} / {m.accuracy[v]:.4f}" if v in m.accuracy else "-"
            for v in variants
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(
    rows: list[Measurement],
    pipe: list[Measurement],
    base: list[Measurement],
    accuracy_delta: dict[str, float],
) -> list[str]:
    """Every target beside its measured figure (the performance issue's list)."""
    by_label = {m.label: m for m in rows}
    plain_wall = statistics.median(m.wall_s for m in base)
    full_wall = statistics.median(m.wall_s for m in pipe)
    outside = statistics.median(m.overhead_s or 0.0 for m in pipe)
    worst = max((m for m in rows if m not in base), key=lambda m: m.peak_rss_mb)
    checks = [
        ("full run <= 0.5 x plain wall (medians)", pipe[-1], lambda m: full_wall / plain_wall,
         0.5, "{:.2f} x (" + f"{full_wall:.0f} s vs {plain_wall:.0f} s)"),
        ("peak RSS of any process <= 0.9 GB, every run (the worst)", worst,
         lambda m: m.peak_rss_mb / 1000, 0.9, "{:.2f} GB (" + worst.label + ")"),
        ("time outside training in a full run <= 8 s (median)", pipe[-1], lambda m: outside,
         8.0, "{:.1f} s"),
        ("--profile smoke cold <= 15 s", by_label.get("pipeline smoke, cold"),
         lambda m: m.wall_s, 15.0, "{:.1f} s"),
        ("unchanged rerun <= 6 s", by_label.get("pipeline full, rerun"), lambda m: m.wall_s,
         6.0, "{:.1f} s"),
        ("study lecture <= 2.5 x plain wall", by_label.get("study lecture (35 runs)"),
         lambda m: m.wall_s / plain_wall, 2.5, "{:.2f} x"),
        ("test accuracy >= plain - 0.005, every variant", pipe[-1],
         lambda m: -min(accuracy_delta.values()), 0.005, "worst {:+.4f} below"),
    ]  # fmt: skip
    lines = ["| target | measured | status |", "| --- | --- | --- |"]
    for name, row, figure, limit, fmt in checks:
        if row is None:
            lines.append(f"| {name} | not measured (see the options) | - |")
            continue
        value = figure(row)
        status = "met" if value <= limit else "not met"
        lines.append(f"| {name} | {fmt.format(value)} | {status} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=2, help="alternating pipeline/plain pairs")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--study", action="store_true", help="also time --study lecture")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", GX_ANALYTICS_ENABLED="false")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="variants-bench-") as tmp:
        # One Prefect home for all runs, set up once (like a user's ~/.prefect): creating its
        # database is a one-time cost of installing, not of a pipeline run.
        env["PREFECT_HOME"] = str(Path(tmp) / "prefect-home")
        warm_up = [str(BIN / "variants"), "validate", "--data-dir", str(data_dir)]
        measure("warm-up", warm_up, Path(tmp), env)
        for i in range(args.rounds):
            work = Path(tmp) / f"round{i}"
            work.mkdir()
            rows.append(pipeline(f"pipeline full #{i + 1}", work, data_dir, "full", env))
            print(table(rows[-1:]), flush=True)
            rows.append(plain(data_dir, env))
            rows[-1].label = f"plain #{i + 1}"
            print(table(rows[-1:]), flush=True)
        rows.append(pipeline("pipeline full, rerun", work, data_dir, "full", env))
        smoke = Path(tmp) / "smoke"
        smoke.mkdir()
        rows.append(pipeline("pipeline smoke, cold", smoke, data_dir, "smoke", env, cold=False))
        smoke = Path(tmp) / "smoke-nothing-cached"
        smoke.mkdir()
        rows.append(pipeline("pipeline smoke, nothing cached", smoke, data_dir, "smoke", env))
        if args.study:
            study = Path(tmp) / "study"
            study.mkdir()
            rows.append(
                pipeline(
                    "study lecture (35 runs)", study, data_dir, "full", env, "--study", "lecture"
                )
            )
    pipe = [m for m in rows if m.label.startswith("pipeline full #")]
    base = [m for m in rows if m.label.startswith("plain")]
    ratio = {
        "wall": statistics.median(m.wall_s for m in pipe)
        / statistics.median(m.wall_s for m in base),
        "CPU": statistics.median(m.cpu_s for m in pipe) / statistics.median(m.cpu_s for m in base),
        "peak RSS": statistics.median(m.peak_rss_mb for m in pipe)
        / statistics.median(m.peak_rss_mb for m in base),
    }
    accuracy_delta = {
        v: pipe[-1].accuracy[v] - base[-1].accuracy[v]
        for v in base[-1].accuracy
        if v in pipe[-1].accuracy
    }
    report = [
        "# Benchmarks",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()} by "
        "`python benchmarks/pipeline_vs_plain.py`.",
        "",
        table(rows),
        "",
        "Ratios pipeline/plain (medians): " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()),
        "",
        "Physical floor (a full run's CPU seconds / cores, medians): "
        + f"{statistics.median(m.cpu_s for m in pipe) / (os.cpu_count() or 1):.1f} s "
        + f"against {statistics.median(m.wall_s for m in pipe):.1f} s wall",
        "",
        "Test accuracy, pipeline minus plain: "
        + ", ".join(f"{k} {v:+.4f}" for k, v in sorted(accuracy_delta.items())),
        "",
        *targets(rows, pipe, base, accuracy_delta),
        "",
    ]
    text = "\n".join(report)
    print(text)
    previous = args.output.read_text() if args.output.exists() else ""
    notes = previous.split("<!-- notes -->", 1)[1] if "<!-- notes -->" in previous else "\n"
    args.output.write_text(text + "\n<!-- notes -->" + notes)


if __name__ == "__main__":
    main()
