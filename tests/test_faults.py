"""Faults: signals and crashes during training, a locked or unreachable store, a full disk.

Each test drives the real ``variants`` command in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import BIN, Processes, free_port

pytestmark = pytest.mark.faults


def _client(workdir: Path) -> MlflowClient:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def _runs(workdir: Path) -> list:
    if not (workdir / "mlflow.db").exists():
        return []
    client = _client(workdir)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def _start(processes: Processes, *args: str, **env: str) -> subprocess.Popen:
    return processes.start(
        [str(BIN / "variants"), "run", *args],
        env=processes.env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_training(proc: subprocess.Popen, timeout: float = 240) -> str:
    """Read the command's output until a variant reports its first epoch.

    (Reading output rather than the store avoids racing the command's own first write.)
    """
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        seen.append(line)
        if " epoch 1/" in line:
            return "".join(seen)
        if time.monotonic() > deadline:
            break
    raise AssertionError("training never started:\n" + "".join(seen)[-3000:])


def _versions(workdir: Path) -> list:
    if not (workdir / "mlflow.db").exists():
        return []
    return list(_client(workdir).search_model_versions())


def test_sigterm_during_training_ends_runs_killed(
    real_data_dir: Path, tmp_path: Path, processes: Processes
) -> None:
    proc = _start(processes, "--data-dir", str(real_data_dir), "--variants", "mnist_dense")
    try:
        _wait_for_training(proc)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output[-3000:]
    assert "stopped: runs ended KILLED" in output
    statuses = {r.data.tags["role"]: r.info.status for r in _runs(tmp_path)}
    assert statuses == {"pipeline": "KILLED", "variant": "KILLED"}
    assert _versions(tmp_path) == []


def test_sigkill_then_next_run_sweeps_and_keeps_champion(
    real_data_dir: Path, data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    smoke = ["--profile", "smoke", "--data-dir", str(data_slices), "--variants", "mnist_dense"]
    first = _start(processes, *smoke)
    assert first.wait(timeout=300) == 0, first.stdout.read()[-3000:]
    champion = _client(tmp_path).get_model_version_by_alias("mnist-classifier", "champion")

    doomed = _start(processes, "--data-dir", str(real_data_dir), "--variants", "mnist_dense")
    try:
        _wait_for_training(doomed)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=60)
    killed = {r.info.run_id for r in _runs(tmp_path) if r.info.status == "RUNNING"}
    assert len(killed) == 2  # the parent and its variant

    rerun = _start(processes, *smoke, "--margin", "1.0")
    assert rerun.wait(timeout=300) == 0, rerun.stdout.read()[-3000:]
    by_id = {r.info.run_id: r for r in _runs(tmp_path)}
    for run_id in killed:
        assert by_id[run_id].info.status == "FAILED"
        assert by_id[run_id].data.tags["keras_variants.swept"] == "owner process died"
    assert not any(r.info.status == "RUNNING" for r in by_id.values())
    assert not any(v.run_id in killed for v in _versions(tmp_path))
    after = _client(tmp_path).get_model_version_by_alias("mnist-classifier", "champion")
    assert after.version == champion.version


def _lane_processes(pid: int) -> list[int]:
    """The lane processes of the command ``pid``: its children started by multiprocessing's
    spawn (not its resource tracker, nor Prefect's temporary server)."""
    lanes = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it ended meanwhile
        if parent == pid and b"spawn_main" in command:
            lanes.append(int(entry.name))
    return lanes


def test_a_lane_that_dies_stops_the_run_and_the_next_run_trains_again(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """The default runner (processes), one lane: the lane killed as by the out-of-memory
    killer while it trains the first trial. The user reads one error line in the tool's
    words; the run, that trial and the one waiting for the lane (if IMDb's check had
    passed) end FAILED, nothing is registered, no lane is left behind; the next run trains
    both afresh and registers them. (One lane: with two, the other trial may finish before
    the kill.)"""
    smoke = ["--profile", "smoke", "--data-dir", str(data_slices), "--max-parallel", "1"]
    both = ["--variants", "mnist_dense,imdb_reduced"]
    # The data checks not cached yet: MNIST is checked first, so it trains first (with both
    # checks cached, either data set may ask for the one lane first).
    cold = {"PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path / "prefect-results")}
    proc = _start(processes, *smoke, *both, **cold)
    try:
        seen = _wait_for_training(proc)
        lanes = _lane_processes(proc.pid)
        assert len(lanes) == 1, lanes
        os.kill(lanes[0], signal.SIGKILL)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    training = re.search(r"(mnist_dense|imdb_reduced) seed 0 epoch 1/", seen).group(1)
    output = seen + output
    assert proc.returncode == 1, output[-3000:]
    assert output.splitlines()[-1] == (
        "error: a lane process (where TensorFlow runs) ended abruptly: killed, or out of "
        "memory; this run stopped. Run again (with --max-parallel 1 if memory is short)"
    )
    assert "Traceback" not in output and "BrokenProcessPool" not in output
    runs = _runs(tmp_path)
    statuses: dict[str, list[tuple[str, str]]] = {}
    for r in runs:
        statuses.setdefault(r.data.tags["dataset"], []).append((r.data.tags["role"], r.info.status))
    ended = [("pipeline", "FAILED"), ("variant", "FAILED")]
    assert sorted(statuses["mnist"]) == ended
    # IMDb is checked while MNIST trains: its check waited for the lane (no run), or it had
    # passed and its trial waited for the lane's turn (both FAILED)
    assert sorted(statuses.get("imdb", [])) in ([], ended), statuses
    assert training == "mnist_dense"  # checked first, trained first
    assert _versions(tmp_path) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in lanes)

    rerun = _start(processes, *smoke, *both)
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    failed = {r.info.run_id for r in runs}
    fresh = [r for r in _runs(tmp_path) if r.info.run_id not in failed]
    assert sorted((r.data.tags["role"], r.info.status) for r in fresh) == (
        [("pipeline", "FINISHED")] * 2 + [("variant", "FINISHED")] * 2
    )
    assert "unchanged since run" not in output  # a FAILED trial is never reused
    assert "2/2 runs done in" in output  # both counted as done, none as failed
    registered = {v.run_id for v in _versions(tmp_path)}
    assert registered == {r.info.run_id for r in fresh if r.data.tags["role"] == "variant"}


def test_unreachable_tracking_store_fails_clearly(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    proc = _start(
        processes, "--profile", "smoke", "--data-dir", str(data_slices), "--tracking-uri", uri
    )
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert f"MLflow tracking store {uri} is unavailable" in output
    assert "train-" not in output  # no variant task ever started


def test_locked_tracking_store_fails_clearly(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """Another process holds SQLite's write lock on the store for the whole run."""
    _client(tmp_path).search_experiments()  # create the store
    holder = processes.start(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "mlflow.db")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = _start(processes, "--profile", "smoke", "--data-dir", str(data_slices))
        output, _ = proc.communicate(timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1, output[-3000:]
    assert "is unavailable (OperationalError: (sqlite3.OperationalError) database is locked)" in (
        output
    )
    assert "Another process holds a write lock on it" in output
    assert "train-" not in output  # no variant task ever started
    assert _runs(tmp_path) == [] and _versions(tmp_path) == []


LOCK_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


DISK_FULL_SCRIPT = r"""
set -u
mkdir -p mlruns && mount -t tmpfs -o size=8m tmpfs mlruns
variants run $SMOKE --variants imdb_dense > first.log 2>&1 || exit 10
(cd mlruns && find . -type f -print0 | xargs -0 sha256sum) > before.sha256
free_kib=$(df -k --output=avail mlruns | tail -1)
fallocate -l $(( (free_kib - 48) * 1024 )) mlruns/filler
variants run $SMOKE --variants imdb_l2 > second.log 2>&1; echo $? > second.rc
(cd mlruns && sha256sum --quiet -c ../before.sha256) > intact.log 2>&1; echo $? > intact.rc
python -c "$LOAD_CHAMPION" > champion.log 2>&1; echo $? > champion.rc
find mlruns -type f > after.txt
"""
LOAD_CHAMPION = """
import mlflow
mlflow.set_tracking_uri("sqlite:///mlflow.db")
model = mlflow.pyfunc.load_model("models:/imdb-sentiment@champion")
print(model.predict(["A wonderful film, I loved every minute of it."]))
"""


def _private_tmpfs_works(tmp_path: Path) -> bool:
    """Whether this machine lets us mount a small tmpfs in a private mount namespace."""
    unshare = shutil.which("unshare")
    probe = tmp_path / "probe"
    probe.mkdir()
    command = [unshare or "unshare", "-Urm", "mount", "-t", "tmpfs", "tmpfs", str(probe)]
    return unshare is not None and subprocess.run(command, capture_output=True).returncode == 0


def test_disk_full_while_writing_artifacts(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """Artifacts go to an 8 MB tmpfs; the first run fits, then the disk is filled."""
    if not _private_tmpfs_works(tmp_path):
        pytest.skip("cannot mount a private tmpfs here (needs unshare and user namespaces)")
    env = processes.env(
        SMOKE=f"--profile smoke --data-dir {data_slices}",
        LOAD_CHAMPION=LOAD_CHAMPION,
        PATH=f"{BIN}:{os.environ['PATH']}",
    )
    done = processes.run(["unshare", "-Urm", "bash", "-c", DISK_FULL_SCRIPT], env=env)
    assert done.returncode == 0, (tmp_path / "first.log").read_text()[-3000:] + done.stderr

    second = (tmp_path / "second.log").read_text()
    assert (tmp_path / "second.rc").read_text().strip() == "1", second[-3000:]
    assert "error: no space left on the device while writing run" in second
    # Earlier artifacts are intact and the champion from the first run still loads.
    assert (tmp_path / "intact.rc").read_text().strip() == "0", (
        tmp_path / "intact.log"
    ).read_text()
    assert (tmp_path / "champion.rc").read_text().strip() == "0", (
        tmp_path / "champion.log"
    ).read_text()
    runs = _runs(tmp_path)
    failed = {r.info.run_id for r in runs if r.info.status == "FAILED"}
    assert {r.data.tags["role"] for r in runs if r.info.run_id in failed} == {"pipeline", "variant"}
    assert not any(r.info.status == "RUNNING" for r in runs)
    assert [v.run_id for v in _versions(tmp_path)] == [
        r.info.run_id for r in runs if r.data.tags.get("variant") == "imdb_dense"
    ]
    # The failed run's partly written model is marked FAILED and removed from the disk.
    client = _client(tmp_path)
    experiment = runs[0].info.experiment_id
    models = client.search_logged_models([experiment])
    half_written = [m for m in models if str(m.status) == "FAILED"]
    assert half_written and all(m.source_run_id in failed for m in half_written)
    after = (tmp_path / "after.txt").read_text()
    assert not any(m.model_id in after for m in half_written)
