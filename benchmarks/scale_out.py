"""Scale-out benchmark (README: "More than one machine"): the 5-seed lecture study on the team
stack that `scripts/stack up` starts (PostgreSQL; MLflow and Prefect servers on it; a Dask
scheduler and two worker processes) beside the same study on the default lane processes
(SQLite store, Prefect's temporary server), and what the stack's parts carried meanwhile:

- the wall time of each, and their ratio;
- the tracking server's write rate during the study: metric points per second (mean over the
  study, and the busiest 10 s), read from the MLflow database's own timestamps;
- the CPU seconds each part of the stack spent during the study (MLflow server, PostgreSQL,
  Prefect server, Dask scheduler, Dask workers), sampled from their process trees;
- the MLflow server's ceiling for the pipeline's kind of write (a ``log_batch`` of a few
  metric points) from several client threads for a few seconds, after the study.

From these it estimates how many such studies one MLflow server (one worker process) and one
Dask scheduler would carry, and which part saturates first. Prints the figures and writes them
into BENCHMARKS.md between the `<!-- scale-out -->` markers:

    python benchmarks/scale_out.py [--profile full|smoke] [--data-dir ../shared/data] [--work DIR]

Needs the `server` extra and PostgreSQL (as `make test` sets up). Nothing else should run on
the machine meanwhile.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from sections import write_section  # benchmarks/ runs as scripts: its own folder

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STACK = REPO / "scripts" / "stack"
BEGIN, END = "<!-- scale-out -->", "<!-- /scale-out -->"
PARTS = ("mlflow", "postgres", "prefect", "scheduler", "workers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the user's own MLflow and Prefect settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return env | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


class Stack:
    """The stack of `scripts/stack`, on free ports, its state under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = clean_env(
            STACK_DIR=str(root / "state"),
            STACK_BIN=str(BIN),
            **{f"STACK_{p}_PORT": str(free_port()) for p in ("PG", "MLFLOW", "PREFECT", "DASK")},
        )

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            [str(STACK), *args], env=self.env, capture_output=True, text=True, timeout=900
        )
        if done.returncode:
            raise SystemExit(f"scripts/stack {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def client(self) -> dict[str, str]:
        """What `scripts/stack env` prints: URLs, credentials, the scheduler's address."""
        lines = self("env").splitlines()
        return dict(line.removeprefix("export ").split("=", 1) for line in lines if line)

    def settings(self) -> dict[str, str]:
        """All of stack.env (the database password too, for reading the MLflow database)."""
        text = (self.root / "state" / "stack.env").read_text().splitlines()
        return dict(line.removeprefix("export ").split("=", 1) for line in text if "=" in line)

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Each part's process tree now (PostgreSQL: its postmaster and children)."""
        trees: dict[str, list[psutil.Process]] = {}
        pids = self.root / "state" / "pids"
        pgroot = Path((self.root / "state" / "pgroot").read_text().strip())
        tops = {p: pids / f"{p}.pid" for p in PARTS if p != "postgres"}
        tops["postgres"] = pgroot / "data" / "postmaster.pid"
        for part, pidfile in tops.items():
            try:
                top = psutil.Process(int(pidfile.read_text().split()[0]))
                trees[part] = [top, *top.children(recursive=True)]
            except (OSError, ValueError, psutil.Error):
                trees[part] = []
        return trees


class CpuMeter:
    """CPU seconds per part of the stack over a window, sampled every second (a process that
    ends between samples keeps what it had at the last sample)."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._first: dict[int, float] = {}  # a process's CPU seconds when first seen
        self._started = False
        self._last: dict[int, float] = {}
        self._part: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CpuMeter:
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self._take()

    def _take(self) -> None:
        for part, processes in self._stack.processes().items():
            for process in processes:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                seconds = times.user + times.system
                # Present at the start: count from there; started later: all of it.
                self._first.setdefault(process.pid, 0.0 if self._started else seconds)
                self._last[process.pid] = seconds
                self._part[process.pid] = part
        self._started = True

    def seconds(self) -> dict[str, float]:
        spent = dict.fromkeys(PARTS, 0.0)
        for pid, last in self._last.items():
            spent[self._part[pid]] += last - self._first[pid]
        return spent


def study(workdir: Path, data_dir: Path, profile: str, env: dict[str, str], *extra: str) -> float:
    """Wall seconds of `variants run --study lecture` in ``workdir``."""
    workdir.mkdir(parents=True)
    command = [str(BIN / "variants"), "run", "--study", "lecture", "--profile", profile,
               "--data-dir", str(data_dir), *extra]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"the study failed in {workdir}:\n{(done.stdout + done.stderr)[-3000:]}")
    return wall


def write_rate(settings: dict[str, str], since_ms: int) -> tuple[int, float, float, float]:
    """Metric points of runs started since ``since_ms``: their count, the seconds from the
    first to the last, and the mean and busiest-10-s rates (points per second)."""
    import psycopg2

    with psycopg2.connect(
        host="127.0.0.1", port=settings["STACK_PG_PORT"], user="variants", dbname="mlflow",
        password=settings["STACK_PG_PASSWORD"],
    ) as db, db.cursor() as cursor:  # fmt: skip
        points = "FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid WHERE r.start_time >= %s"
        cursor.execute(f"SELECT count(*), min(m.timestamp), max(m.timestamp) {points}", [since_ms])
        count, first, last = cursor.fetchone()
        cursor.execute(
            f"SELECT count(*) {points} GROUP BY m.timestamp / 10000 ORDER BY 1 DESC LIMIT 1",
            [since_ms],
        )
        (busiest,) = cursor.fetchone() or (0,)
    span = max((last - first) / 1000, 1.0) if count else 1.0
    return count, span, count / span, busiest / 10


def ceiling(client_env: dict[str, str], threads: int, seconds: float) -> float:
    """Requests per second the MLflow server answers for ``log_batch`` calls of 4 metric
    points (a training epoch's kind of write), from ``threads`` clients for ``seconds``."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ[name] = client_env[name]
    client = MlflowClient(client_env["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment(f"write-ceiling-{time.time_ns()}")
    runs = [client.create_run(experiment).info.run_id for _ in range(threads)]
    answered = [0] * threads
    deadline = time.monotonic() + seconds

    def write(i: int) -> None:
        step = 0
        while time.monotonic() < deadline:
            stamp = int(time.time() * 1000)
            keys = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")
            client.log_batch(runs[i], metrics=[Metric(k, 0.5, stamp, step) for k in keys])
            answered[i] += 1
            step += 1

    workers = [threading.Thread(target=write, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(answered) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--profile", default="full", choices=("full", "smoke"))
    parser.add_argument("--work", type=Path, default=Path.cwd() / "scale-out-benchmark")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    load_before = os.getloadavg()[0]

    # The default: lane processes, a SQLite store, Prefect's temporary server.
    lanes_env = clean_env(PREFECT_HOME=str(args.work / "lanes-prefect-home"))
    lanes = study(args.work / "lanes", args.data_dir, args.profile, lanes_env)
    print(f"lanes: {lanes:.0f} s", flush=True)

    stack = Stack(args.work / "stack")
    began = time.perf_counter()
    stack("up")
    up = time.perf_counter() - began
    print(f"scripts/stack up: {up:.0f} s", flush=True)
    try:
        client = stack.client()
        stack_env = clean_env(**client, PREFECT_HOME=str(args.work / "stack-prefect-home"))
        since = int(time.time() * 1000)
        with CpuMeter(stack) as meter:
            dask = study(args.work / "dask", args.data_dir, args.profile, stack_env,
                         "--runner", "dask", "--dask-address", client["VARIANTS_DASK_ADDRESS"],
                         "--tracking-uri", client["MLFLOW_TRACKING_URI"])  # fmt: skip
        print(f"dask on the stack: {dask:.0f} s", flush=True)
        cpu = meter.seconds()
        points, span, mean_rate, peak_rate = write_rate(stack.settings(), since)
        answered = ceiling(client, threads=4, seconds=15)
    finally:
        stack("down")

    report = format_report(args, lanes, dask, up, cpu, points, span, mean_rate, peak_rate,
                           answered, load_before)  # fmt: skip
    print(report)
    write_section(args.output, BEGIN, END, report)
    print(f"written to {args.output}")


def format_report(
    args, lanes, dask, up, cpu, points, span, mean_rate, peak_rate, answered, load_before
) -> str:
    mlflow_share = cpu["mlflow"] / dask  # cores the MLflow server used, on average
    scheduler_share = max(cpu["scheduler"] / dask, 1e-6)
    requests_per_study = mean_rate / 4  # log_batch calls of ~4 points each (epochs)
    by_cpu = 1 / max(mlflow_share, 1e-6)
    by_ceiling = answered / max(requests_per_study, 1e-6)
    studies_per_server = min(by_cpu, by_ceiling)
    workers_per_scheduler = 2 / scheduler_share  # 2 workers used this share of a core
    first = (
        "the MLflow server"
        if studies_per_server * 2 < workers_per_scheduler
        else "the Dask scheduler"
    )
    serving = cpu["mlflow"] + cpu["postgres"] + cpu["prefect"] + cpu["scheduler"]
    caveat = (
        "Smoke trials last seconds, so these are the worst case per study: full-profile "
        "trials write the same points per epoch over minutes, and the server carries more "
        "of them."
        if args.profile == "smoke"
        else ""
    )
    rows = "\n".join(
        f"| {part} | {seconds:.1f} | {seconds / dask * 100:.1f} % |"
        for part, seconds in cpu.items()
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""## Scale-out: the lecture study on the team stack

`python benchmarks/scale_out.py --profile {args.profile}`, {when}, {platform.machine()},
{os.cpu_count()} cores (load before: {load_before:.1f}). One study each, one after the other:
the default lanes (SQLite store, Prefect's temporary server), then two Dask worker processes
of one thread each behind a scheduler, tracked by an MLflow server (one worker process, basic
auth, artifacts proxied) on PostgreSQL, with a Prefect server on PostgreSQL (`scripts/stack
up`: {up:.0f} s, not in the wall time).

| `--study lecture --profile {args.profile}` (35 trainings) | wall |
| --- | --- |
| lanes (default) | {lanes:.0f} s |
| `--runner dask` on the stack | {dask:.0f} s (**{dask / lanes:.2f} x** the lanes) |

On one machine the stack's servers run on the cores that train: they spent {serving:.0f} CPU
seconds during the study (below), ~{serving / 2:.0f} s of wall time on two cores, and every
tracking call crosses HTTP instead of a local SQLite file. On several machines the servers
have cores of their own.

Tracking writes during the study on the stack: **{points} metric points** over {span:.0f} s,
**{mean_rate:.1f} points/s** on average, **{peak_rate:.1f} points/s** in the busiest 10 s
(the MLflow database's own timestamps). CPU each part of the stack spent during the study:

| part | CPU seconds | share of one core |
| --- | --- | --- |
{rows}

The MLflow server's ceiling for the pipeline's kind of write (`log_batch` of 4 points, 4
client threads in one process on the same cores, 15 s, after the study): **{answered:.0f}
requests/s** ({answered * 4:.0f} points/s; the clients share the cores, so the server's own
ceiling is at least this).

**Estimate** (linear in the figures above): the study wrote ~{requests_per_study:.2f} write
requests/s on average, so one MLflow server process carries ~{by_ceiling:.0f} such studies at
once by its write ceiling and ~{by_cpu:.0f} by the CPU it spent here ({mlflow_share * 100:.1f} %
of a core per study): **~{studies_per_server:.0f} concurrent studies** per server process, the
lower of the two. The Dask scheduler spent {scheduler_share:.1%} of a core on the study (its
2 workers, their heartbeats and the study's tasks): ~{1 / scheduler_share:.0f} such studies,
**~{workers_per_scheduler:.0f} workers**, per scheduler core. So **{first} saturates first**.
Past it: more MLflow server workers (`--workers N`) on the same database, until
PostgreSQL's connections (100 by default; each MLflow worker process pools up to 15) or its
write rate bind. {caveat}
"""


if __name__ == "__main__":
    main()
