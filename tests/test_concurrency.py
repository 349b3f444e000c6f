"""Two pipeline runs, and two promotions, at once on one MLflow store.

Each side is the real ``variants`` command in its own process, sharing the store (SQLite
database and artifact folder) and the Prefect home, as two users or two schedules would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from keras_variants.registry.versions import REGISTERED_MODELS, register_challenger
from keras_variants.tracking.records import load_pipeline
from tests.helpers import BIN, subprocess_env, tier

pytestmark = pytest.mark.faults

MODEL = REGISTERED_MODELS["imdb"]


@dataclass
class Finished:
    returncode: int
    output: str


def _together(workdir: Path, *commands: list[str]) -> list[Finished]:
    """Start every command at once in ``workdir``; wait for all of them to exit.

    Output goes to files and each command runs in its own process group, removed at the
    end, so nothing a command leaves behind can keep the test waiting.
    """
    logs = [workdir / f"command-{i}.log" for i in range(len(commands))]
    procs = []
    for args, log in zip(commands, logs, strict=True):
        with log.open("w") as out:
            procs.append(
                subprocess.Popen(
                    [str(BIN / "variants"), *args],
                    cwd=workdir,
                    env=subprocess_env(workdir),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        codes = [p.wait(timeout=600) for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
    return [Finished(code, log.read_text()) for code, log in zip(codes, logs, strict=True)]


def _client(workdir: Path) -> MlflowClient:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def _test_accuracy(client: MlflowClient, version) -> float:
    return client.get_run(version.run_id).data.metrics["test/accuracy"]


@pytest.fixture(scope="module")
@tier("system", shared=True)
def two_runs(data_slices: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two smoke pipelines started together on one new store, each with two IMDb variants.

    ``--significance 1``: these tests are about concurrency, and on 500 smoke test inputs a
    better model need not be better beyond chance; at level 1 the gate promotes any gain.
    """
    workdir = tmp_path_factory.mktemp("shared-store")
    smoke = ["run", "--profile", "smoke", "--data-dir", str(data_slices), "--significance", "1"]
    finished = _together(
        workdir,
        [*smoke, "--variants", "imdb_dense,imdb_l2"],
        [*smoke, "--variants", "imdb_dropout,imdb_reduced"],
    )
    return workdir, finished


def test_two_runs_at_once_both_complete_and_the_better_model_is_champion(two_runs) -> None:
    workdir, finished = two_runs
    for done in finished:
        assert done.returncode == 0, done.output[-3000:]
        assert "database is locked" not in done.output
    client = _client(workdir)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert sorted(r.data.tags.get("role") for r in runs) == ["pipeline"] * 2 + ["variant"] * 4
    assert {r.info.status for r in runs} == {"FINISHED"}

    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == 2  # one challenger per pipeline run
    assert all("promotion.decision" in v.tags for v in versions)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    best = max(versions, key=lambda v: float(v.tags["promotion.test_accuracy"]))
    assert champion.version == best.version


def test_two_promotions_at_once_end_with_the_better_champion(two_runs, data_slices: Path) -> None:
    workdir, _ = two_runs
    client = _client(workdir)
    # Register the two variants no pipeline picked, and make the worst model champion.
    registered = {v.run_id for v in client.search_model_versions(f"name = '{MODEL}'")}
    for record in _imdb_variants(client):
        if record.run_id not in registered:
            register_challenger(client, record)
    versions = sorted(
        client.search_model_versions(f"name = '{MODEL}'"), key=lambda v: _test_accuracy(client, v)
    )
    assert len(versions) == 4
    worst, *_, second, best = versions
    assert _test_accuracy(client, second) > _test_accuracy(client, worst)
    client.set_registered_model_alias(MODEL, "champion", worst.version)

    promote = ["promote", "--model", MODEL, "--profile", "smoke", "--data-dir", str(data_slices)]
    promote += ["--significance", "1"]  # any gain promotes, as in two_runs
    finished = _together(
        workdir,
        [*promote, "--version", str(second.version)],
        [*promote, "--version", str(best.version)],
    )
    champion = client.get_model_version_by_alias(MODEL, "champion")
    previous = client.get_model_version_by_alias(MODEL, "previous")
    assert champion.version == best.version
    assert f"champion v{previous.version} " in champion.tags["promotion.reason"]
    # Two orders are possible, and each has one consistent outcome.
    second_decision = client.get_model_version(MODEL, second.version).tags["promotion.decision"]
    codes = [done.returncode for done in finished]
    if previous.version == second.version:  # second won the lock, then best replaced it
        assert (second_decision, codes) == ("promoted", [0, 0]), finished[0].output[-3000:]
    else:  # best won the lock; second, worse than the new champion, was rejected (exit 3)
        assert previous.version == worst.version
        assert (second_decision, codes) == ("rejected", [3, 0]), finished[0].output[-3000:]


def _imdb_variants(client: MlflowClient) -> list:
    """The IMDb variant records of every pipeline run in the store."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, "tags.role = 'pipeline'")
    return [r for p in parents for r in load_pipeline(client, p.info.run_id).variants["imdb"]]
