"""Shared fixtures: slices of the real data, a Prefect test server, a tmp MLflow store; and
the tiers, derived from the fixtures each test uses.

Three tiers (README: "Tests"):

- quick, ``pytest -m "not slow"``: pure functions and in-process pieces on small data;
- middle, ``pytest -m "not system"``: besides, the session's Prefect test server and smoke
  run, and every in-process pipeline and test server;
- whole, ``pytest``: besides, the real command, servers and tools in subprocesses (faults,
  schedules, concurrency, the team stack, the browser).

No test says its tier: a fixture does, where it is defined (``@tier`` from tests/helpers.py),
and a test is in the highest tier among the fixtures it uses, directly or through others. A
test that starts a process itself uses the ``processes`` fixture, which stops what it
started.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from tests.helpers import SHARED, TIERS, Processes, tier

if TYPE_CHECKING:
    from flows.pipeline import PipelineResult
    from keras_variants.config.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    configured = os.environ.get("VARIANTS_DATA_DIR")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    path = _shared_data_dir().resolve()
    if not (path / "mnist.npz").is_file():
        pytest.skip(f"offline data mirror not found at {path}; set VARIANTS_DATA_DIR")
    return path


def write_slices(source: Path, target: Path, train: int, test: int, seed: int = 0) -> Path:
    """Copy random rows of the real files (both IMDb classes included, with their review
    texts) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with np.load(source / "mnist.npz") as m:
        np.savez(
            target / "mnist.npz",
            x_train=m["x_train"][:train],
            y_train=m["y_train"][:train],
            x_test=m["x_test"][:test],
            y_test=m["y_test"][:test],
        )
    reviews = pd.read_parquet(source / "imdb_reviews.parquet")
    texts = []
    with np.load(source / "imdb.npz", allow_pickle=True) as d:  # trusted: our own mirror
        arrays = {}
        for split, rows in (("train", train), ("test", test)):
            pick = np.sort(rng.choice(len(d[f"y_{split}"]), rows, replace=False))
            arrays[f"x_{split}"] = d[f"x_{split}"][pick]
            arrays[f"y_{split}"] = d[f"y_{split}"][pick]
            texts.append(reviews[reviews["split"] == split].iloc[pick])
    np.savez(target / "imdb.npz", **arrays)
    pd.concat(texts).to_parquet(target / "imdb_reviews.parquet")
    shutil.copy(source / "imdb_word_index.json", target / "imdb_word_index.json")
    return target


@pytest.fixture(scope="session")
def data_slices(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like the real one with 1,200 train and 500 test rows of each data set."""
    return write_slices(real_data_dir, tmp_path_factory.mktemp("data"), train=1_200, test=500)


@pytest.fixture
def broken_dir(data_slices: Path, tmp_path: Path) -> Path:
    """A writable copy of the slices for a test to break."""
    return Path(shutil.copytree(data_slices, tmp_path / "data"))


def rewrite_npz(path: Path, **changes: np.ndarray | None) -> None:
    """Rewrite ``path`` with some arrays replaced (None removes the key)."""
    with np.load(path, allow_pickle=True) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def npz_with_member(path: Path, key: str, payload: bytes, header: dict) -> None:
    """Write an npz whose ``key`` member is an npy header followed by raw ``payload``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(path, "a" if path.exists() else "w") as archive:
        archive.writestr(f"{key}.npy", buffer.getvalue() + payload)


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory: pytest.TempPathFactory):
    """The session's own cache of read data sets (not the user's), for every test and the
    commands they start."""
    with pytest.MonkeyPatch.context() as patch:  # the environment is restored afterwards
        patch.setenv("VARIANTS_CACHE_DIR", str(tmp_path_factory.mktemp("data-cache")))
        yield


@pytest.fixture(scope="session")
@tier("slow")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """A real temporary Prefect server for the whole test session."""
    home = tmp_path_factory.mktemp("prefect-home")
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as patch:  # the environment is restored afterwards
        patch.setenv("PREFECT_HOME", str(home))
        patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        patch.setenv("GX_ANALYTICS_ENABLED", "false")
        patch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
        with prefect_test_harness(server_startup_timeout=180):
            yield


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="session")
def smoke_config(store: Path, data_slices: Path) -> PipelineConfig:
    from keras_variants.config.pipeline import build_config

    return build_config(profile="smoke", data_dir=data_slices, workdir=store)


@pytest.fixture(scope="session")
@tier("slow", shared=True)  # one smoke run (about a minute), its tests on one worker
def smoke_run(prefect_server, smoke_config: PipelineConfig) -> PipelineResult:
    """One smoke-profile pipeline run shared by the tracking, registry and report tests."""
    from flows.pipeline import pipeline

    return pipeline(smoke_config)


@pytest.fixture
@tier("system")
def processes(tmp_path: Path):
    """For a test that runs the real command, a server or a tool in a subprocess."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module imports MLflow: no telemetry, as the command sets it up
    (``runtime.ENVIRONMENT_DEFAULTS``); its thread deletes a variable from os.environ while
    the in-process pipelines' threads read it."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the tier its fixtures sort it into, and group the tests of a
    shared fixture onto one xdist worker (``--dist loadgroup``, whose scheduler hands out
    the largest groups first, then the tests in this order)."""
    for item in items:
        written = [m.name for m in item.iter_markers() if m.name in ("slow", "system")]
        if written:
            raise pytest.UsageError(
                f"{item.nodeid}: marked {written[0]!r} by hand; a test's tier comes from its "
                "fixtures (tests/conftest.py): use the fixture that makes it slow, or "
                "@tier on the fixture"
            )
        tiers = {TIERS[name] for name in item.fixturenames if name in TIERS}
        if "system" in tiers:
            item.add_marker(pytest.mark.system)
        if tiers:
            item.add_marker(pytest.mark.slow)
        shared = [name for name in SHARED if name in item.fixturenames]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))
            _group_for_xdist(config, item, shared[0])
    if config.getoption("dist", "no") != "no":  # longest first: no long test starts last
        items.sort(key=_longest_first)


def _group_for_xdist(config: pytest.Config, item: pytest.Item, group: str) -> None:
    """In an xdist worker under ``--dist loadgroup``: the test's id ends in ``@group``, the
    suffix by which the controller keeps a group on one worker. xdist 3.8 writes it into
    ``item._nodeid``, which pytest 9.2 no longer reads (its ids are structured), so every
    group was spread over the workers and each rebuilt the shared fixture
    (pytest-dev/pytest-xdist#1386; the fix, #1388, updates the structured id as here)."""
    from _pytest.nodeid import coerce_node_id

    if getattr(config.option, "loadgroup", False) and not item.nodeid.endswith(f"@{group}"):
        item._id = coerce_node_id(f"{item.nodeid}@{group}")


def _longest_first(item: pytest.Item) -> int:
    return 0 if "system" in item.keywords else 1 if "slow" in item.keywords else 2


# Skips CI may have: what depends on the machine, not on a set-up step. Under .ci/run
# (VARIANTS_CI=1) any other skip is a failure: a missing browser or data folder is a set-up
# bug that would otherwise pass silently.
CI_MAY_SKIP = ("the Keras download host resolves here", "cannot mount a private tmpfs here")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = (yield).get_result()
    if report.skipped and os.environ.get("VARIANTS_CI") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        if not any(allowed in str(reason) for allowed in CI_MAY_SKIP):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI, which must install what it needs: {reason}"
