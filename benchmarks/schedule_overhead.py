"""Schedule overhead benchmark: a small input (a folder of 20 PNG digits) dropped into the
inbox of a running `variants schedule --score-inbox`, start to finish, against a real
`prefect server start`; beside it, the same input scored by `variants score` by hand.

Needs a store with a mnist-classifier champion (after `variants run`; a smoke run will do).
Starts its own Prefect server on a free loopback port (its home under the work folder),
drops the input `--repeats` times one after the other, and splits each end-to-end time
into: the watcher seeing it settle, the event and trigger creating a flow run, the runner
picking it up and starting its process, the flow's own scoring (`summary.json`'s seconds),
and the rest of the run (process start, imports, the move to done/). Prints the figures
and writes them into BENCHMARKS.md between the `<!-- schedule -->` markers:

    python benchmarks/schedule_overhead.py [--tracking-uri sqlite:///$PWD/mlflow.db] [--work /tmp/b]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from sections import write_section  # benchmarks/ runs as scripts: its own folder

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BEGIN, END = "<!-- schedule -->", "<!-- /schedule -->"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(check, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, OSError, ValueError):
            result = None
        if result:
            return result
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def digits(data_dir: Path, folder: Path, count: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    with np.load(data_dir / "mnist.npz") as mnist:
        for i, image in enumerate(mnist["x_test"][:count]):
            Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


def ended_run(http: httpx.Client) -> dict | None:
    """The latest top-level flow run (the inbox run, not its subflows), once it has ended."""
    query = {"flow_runs": {"parent_task_run_id": {"is_null_": True}},
             "sort": "START_TIME_DESC", "limit": 1}  # fmt: skip
    (run,) = http.post("/flow_runs/filter", json=query).json()
    return run if run["end_time"] else None


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path.cwd() / "schedule-benchmark")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--digits", type=int, default=20)
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    inbox, staging = args.work / "inbox", args.work / "staging"
    inbox.mkdir(parents=True)
    load_before = os.getloadavg()[0]
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_API_URL": api, "PREFECT_HOME": str(args.work / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    variants = str(BIN / "variants")

    # By hand first: the same input through `variants score` (its own temporary server).
    by_hand = digits(args.data_dir, staging / "by-hand", args.digits)
    hand_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    began = time.perf_counter()
    subprocess.run([variants, "score", str(by_hand), "--model", "mnist-classifier",
                    "--tracking-uri", args.tracking_uri, "--out", str(args.work / "by-hand")],
                   env=hand_env, check=True, capture_output=True)  # fmt: skip
    hand_wall = time.perf_counter() - began
    hand_flow = json.loads((args.work / "by-hand" / "summary.json").read_text())["seconds"]

    server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                    "--port", str(port)], env, args.work / "server.log")  # fmt: skip
    schedule_log = args.work / "schedule.log"
    schedule = None
    rows = []
    try:
        with httpx.Client(base_url=api, timeout=10) as http:
            wait(lambda: http.get("/health").status_code == 200, 180, "the Prefect server", 1)
            schedule = start([variants, "schedule", "--score-inbox", str(inbox), "--model",
                              "mnist-classifier", "--tracking-uri", args.tracking_uri],
                             env, schedule_log)  # fmt: skip
            wait(lambda: "Prefect UI:" in schedule_log.read_text(), 180, "the schedule", 1)
            time.sleep(10)  # let the runner settle into its polling
            for repeat in range(args.repeats):
                name = f"digits-{repeat}"
                folder = digits(args.data_dir, staging / name, args.digits)
                time.sleep(3)  # the files' modification times are old: settle is the watcher's
                dropped = time.time()
                os.rename(folder, inbox / name)
                seen = wait(lambda n=name: f"inbox: {n} waiting" in schedule_log.read_text(),
                            120, "the watcher")  # fmt: skip
                seen_at = time.time()
                assert seen
                wait(lambda n=name: (inbox / "done" / n).exists(), 300, f"{name} in done/")
                done_at = time.time()
                summary = json.loads((inbox / "scored" / name / "summary.json").read_text())
                run = wait(lambda: ended_run(http), 60, "the run to end")
                rows.append({
                    "end_to_end": done_at - dropped,
                    "watcher": seen_at - dropped,
                    "to_created": stamp(run["created"]) - seen_at,
                    "created_to_start": stamp(run["start_time"]) - stamp(run["created"]),
                    "run": stamp(run["end_time"]) - stamp(run["start_time"]),
                    "scoring": summary["seconds"]["total"],
                    "load": summary["seconds"]["load"],
                })  # fmt: skip
                print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows[-1].items()))
                time.sleep(5)
    finally:
        if schedule is not None:
            stop(schedule)
        stop(server)
    load_after = os.getloadavg()[0]

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    end_to_end, work = median("end_to_end"), hand_flow["total"]
    table = [
        ("dropped → done/ (end to end)", end_to_end),
        ("  the watcher sees it settle (polls every 5 s, two equal looks, 2 s settle)",
         median("watcher")),
        ("  its event → the trigger creates a flow run", median("to_created")),
        ("  created → running (the runner polls every 10 s, starts a process, imports)",
         median("created_to_start")),
        ("  the flow run, running → ended (the score flow, the move to done/)", median("run")),
        ("    of which the score flow (summary.json total)", median("scoring")),
        ("      of which its load stage (TensorFlow imported afresh in each run's process)",
         median("load")),
        ("`variants score` by hand, same input: wall, startup included", hand_wall),
        ("  of which the score flow (TensorFlow imported while the command starts)", work),
        ("overhead: end to end minus the score flow by hand (the work itself)", end_to_end - work),
    ]  # fmt: skip
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Schedule overhead",
        "",
        f"Measured {when} on {os.cpu_count()} cores (load average {load_before:.1f} before, "
        f"{load_after:.1f} after), {platform.machine()}, Python {platform.python_version()} "
        "by `python benchmarks/schedule_overhead.py`: a folder of "
        f"{args.digits} PNG digits renamed into the inbox of a running `variants schedule "
        "--score-inbox` (a real `prefect server start`), until it is in `done/`; median of "
        f"{len(rows)} drops one after the other. Seconds:",
        "",
        "| step | s |",
        "| --- | --- |",
        *(f"| {what} | {value:.1f} |" for what, value in table),
        "",
        "Each drop: " + "; ".join(f"{r['end_to_end']:.1f}" for r in rows) + " s end to end.",
    ]
    if max(load_before, load_after) > (os.cpu_count() or 1):
        lines += [
            "",
            f"The machine was shared (load average above its {os.cpu_count()} cores): process "
            "start and imports dominate and stretch with contention; rerun on a quiet machine.",
        ]
    section = "\n".join(lines)
    print(section)
    write_section(args.output, BEGIN, END, section)


if __name__ == "__main__":
    main()
