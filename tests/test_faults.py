"""Faults: signals and crashes during training, an unreachable tracking store.

Each test drives the real ``variants`` command in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import BIN, free_port, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def _client(workdir: Path) -> MlflowClient:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def _runs(workdir: Path) -> list:
    if not (workdir / "mlflow.db").exists():
        return []
    client = _client(workdir)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "variants"), "run", *args],
        cwd=workdir,
        env=subprocess_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
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


def test_sigterm_during_training_ends_runs_killed(real_data_dir: Path, tmp_path: Path) -> None:
    proc = _start(tmp_path, "--data-dir", str(real_data_dir), "--variants", "mnist_dense")
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
    real_data_dir: Path, data_slices: Path, tmp_path: Path
) -> None:
    smoke = ["--profile", "smoke", "--data-dir", str(data_slices), "--variants", "mnist_dense"]
    first = _start(tmp_path, *smoke)
    assert first.wait(timeout=300) == 0, first.stdout.read()[-3000:]
    champion = _client(tmp_path).get_model_version_by_alias("mnist-classifier", "champion")

    doomed = _start(tmp_path, "--data-dir", str(real_data_dir), "--variants", "mnist_dense")
    try:
        _wait_for_training(doomed)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=60)
    killed = {r.info.run_id for r in _runs(tmp_path) if r.info.status == "RUNNING"}
    assert len(killed) == 2  # the parent and its variant

    rerun = _start(tmp_path, *smoke, "--margin", "1.0")
    assert rerun.wait(timeout=300) == 0, rerun.stdout.read()[-3000:]
    by_id = {r.info.run_id: r for r in _runs(tmp_path)}
    for run_id in killed:
        assert by_id[run_id].info.status == "FAILED"
        assert by_id[run_id].data.tags["keras_variants.swept"] == "owner process died"
    assert not any(r.info.status == "RUNNING" for r in by_id.values())
    assert not any(v.run_id in killed for v in _versions(tmp_path))
    after = _client(tmp_path).get_model_version_by_alias("mnist-classifier", "champion")
    assert after.version == champion.version


def test_unreachable_tracking_store_fails_clearly(data_slices: Path, tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    proc = _start(
        tmp_path, "--profile", "smoke", "--data-dir", str(data_slices), "--tracking-uri", uri
    )
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert f"MLflow tracking store {uri} is unavailable" in output
    assert "train-" not in output  # no variant task ever started
