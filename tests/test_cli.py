"""The ``variants`` command as a user meets it: mistakes answer at once in a few ``error:``
lines, a run is quiet and ends on its summary, a report needs no TensorFlow.

Each command runs in a real subprocess. For the checks that must answer before anything
heavy loads, the subprocess finds stand-ins for TensorFlow, Keras, Prefect and MLflow first
on its path, which stop it with exit code 99 if imported.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from keras_variants import runtime
from keras_variants.cli.main import _verbose_flags_first, error_message
from keras_variants.errors import DataError
from keras_variants.reporting.progress import (
    SummaryRow,
    Tally,
    mlflow_ui_lines,
    progress_line,
    seconds_left,
    summary_table,
)
from tests.helpers import BIN, Processes, subprocess_env, tier

HEAVY = ("tensorflow", "keras", "prefect", "mlflow")
IMPORTED_TOO_EARLY = 99


@dataclass
class Done:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="module")
def heavy_stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of packages named like the heavy libraries that exit 99 when imported."""
    root = tmp_path_factory.mktemp("stubs")
    for name in HEAVY:
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(
            "import sys\n"
            f"sys.stderr.write('{name} imported before the checks\\n')\n"
            f"sys.exit({IMPORTED_TOO_EARLY})\n"
        )
    return root


def variants(
    *args: str, cwd: Path, stubs: Path | None = None, timeout: float = 600, **env: str
) -> Done:
    environment = subprocess_env(cwd, **env)
    environment.pop("VARIANTS_DATA_DIR", None)
    environment.update(env)
    if stubs is not None:
        environment["PYTHONPATH"] = str(stubs)
    done = subprocess.run(
        [str(BIN / "variants"), *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.splitlines()
    return Done(done.returncode, lines)


def assert_short_error(done: Done, code: int, *fragments: str) -> None:
    """A few lines, the first an ``error:`` line with every fragment, no traceback."""
    assert done.code == code, done.text
    assert 1 <= len(done.lines) <= 4, done.text
    assert done.lines[0].startswith("error: "), done.text
    assert "Traceback" not in done.text
    for fragment in fragments:
        assert fragment in done.text


def tiny_npz(path: Path) -> Path:
    """An .npz with the four Keras keys: enough for the checks made before loading."""
    arrays = {k: np.zeros((2, 2), np.uint8) for k in ("x_train", "x_test")}
    np.savez(path, **arrays, y_train=np.zeros(2, np.uint8), y_test=np.zeros(2, np.uint8))
    return path


@pytest.fixture
def only_mnist(tmp_path: Path) -> Path:
    folder = tmp_path / "only-mnist"
    folder.mkdir()
    tiny_npz(folder / "mnist.npz")
    return folder


# --- mistakes: answered before TensorFlow, Keras, Prefect or MLflow load -------------------


def test_missing_data_folder(tmp_path: Path, heavy_stubs: Path) -> None:
    done = variants("run", "--data-dir", str(tmp_path / "nowhere"), cwd=tmp_path, stubs=heavy_stubs)
    assert_short_error(done, 1, "nowhere", "data folder not found (--data-dir)")


def test_a_folder_is_named_as_the_user_wrote_it(tmp_path: Path, heavy_stubs: Path) -> None:
    done = variants("run", "--data-dir", "nowhere", cwd=tmp_path, stubs=heavy_stubs)
    assert_short_error(done, 1)
    assert done.lines[0].startswith("error: nowhere: data folder not found (--data-dir)")


def test_empty_data_folder(tmp_path: Path, heavy_stubs: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = variants("run", "--data-dir", str(tmp_path / "empty"), cwd=tmp_path, stubs=heavy_stubs)
    assert_short_error(done, 1, "empty: the data folder is empty")


def test_folder_lacking_a_file_the_variants_need(
    tmp_path: Path, heavy_stubs: Path, only_mnist: Path
) -> None:
    done = variants("run", cwd=tmp_path, stubs=heavy_stubs, VARIANTS_DATA_DIR=str(only_mnist))
    assert_short_error(
        done, 1, "no imdb.npz in the data folder (VARIANTS_DATA_DIR", "it holds mnist.npz"
    )


def test_folder_lacking_a_file_other_variants_need_is_fine(
    tmp_path: Path, heavy_stubs: Path, only_mnist: Path
) -> None:
    """With MNIST variants only, the checks pass; the run then loads Prefect (a stub here)."""
    done = variants(
        "run", "--data-dir", str(only_mnist), "--variants", "mnist_dense",
        cwd=tmp_path, stubs=heavy_stubs,
    )  # fmt: skip
    assert done.code == IMPORTED_TOO_EARLY, done.text


def test_folder_without_the_word_index_is_refused_before_anything_starts(
    tmp_path: Path, heavy_stubs: Path, only_mnist: Path
) -> None:
    """The served IMDb model reads texts through the word index: without it a run would
    train every variant and then fail at the gate, so it is refused at once, in one line;
    the data checks, which need no index, still run."""
    tiny_npz(only_mnist / "imdb.npz")
    done = variants("run", "--data-dir", str(only_mnist), cwd=tmp_path, stubs=heavy_stubs)
    assert_short_error(
        done, 1, "no imdb_word_index.json beside imdb.npz (--data-dir)",
        "imdb_dense, imdb_reduced, imdb_l2, imdb_dropout are IMDb variants",
        "Copy imdb_word_index.json", "or choose MNIST variants only with --variants",
    )  # fmt: skip
    assert len(done.lines) == 1, done.text
    validate = variants("validate", "--data-dir", str(only_mnist), cwd=tmp_path, stubs=heavy_stubs)
    assert validate.code == IMPORTED_TOO_EARLY, validate.text


def test_a_file_that_is_not_an_npz(tmp_path: Path, heavy_stubs: Path, only_mnist: Path) -> None:
    (only_mnist / "imdb.npz").write_bytes(b"PK\x03\x04 truncated")
    done = variants("run", "--data-dir", str(only_mnist), cwd=tmp_path, stubs=heavy_stubs)
    assert_short_error(done, 1, "imdb.npz: not a valid .npz (zip) archive")


def test_no_data_folder_and_no_internet(tmp_path: Path, heavy_stubs: Path) -> None:
    try:
        socket.getaddrinfo("storage.googleapis.com", 443)
        pytest.skip("the Keras download host resolves here: the download would be tried")
    except OSError:
        pass
    done = variants("run", cwd=tmp_path, stubs=heavy_stubs, HOME=str(tmp_path))
    assert_short_error(done, 1, "no data folder given", "--data-dir DIR")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "--variants", "imdb_foo"], "unknown variant(s) ['imdb_foo']; choose from"),
        (["run", "--profile", "huge"], "unknown profile 'huge'; choose from full, smoke"),
        (["run", "--margin", "-1"], "--margin: Input should be greater than or equal to 0"),
        (["run", "--significance", "2"], "--significance: Input should be less than or equal"),
        (["run", "--runner", "spark"], "--runner: Input should be 'processes', 'threads' or"),
        (["run", "--epochs", "3"], "No such option: --epochs"),
        (["validate", "--profile", "huge"], "unknown profile 'huge'"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_usage_errors(tmp_path: Path, heavy_stubs: Path, args: list[str], fragment: str) -> None:
    data = ["--data-dir", str(tmp_path)] if args[0] != "nonsense" else []
    done = variants(*args, *data, cwd=tmp_path, stubs=heavy_stubs)
    assert_short_error(done, 2, fragment, "--help")


def test_unknown_model_to_promote(tmp_path: Path, heavy_stubs: Path) -> None:
    stubs = tmp_path / "stubs"  # MLflow may load (it knows the models), TensorFlow not
    shutil.copytree(heavy_stubs, stubs, ignore=shutil.ignore_patterns("mlflow"))
    done = variants("promote", "--model", "cats", cwd=tmp_path, stubs=stubs)
    assert_short_error(done, 2, "unknown model 'cats'; choose from mnist-classifier")


def test_report_without_a_store(tmp_path: Path, heavy_stubs: Path) -> None:
    done = variants("report", cwd=tmp_path, stubs=heavy_stubs)
    assert_short_error(done, 1, f"no MLflow store at {tmp_path / 'mlflow.db'}")
    assert not (tmp_path / "mlflow.db").exists()


def test_report_on_a_run_that_is_not_there(tmp_path: Path, heavy_stubs: Path) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()  # an empty store
    stubs = tmp_path / "stubs"
    shutil.copytree(heavy_stubs, stubs, ignore=shutil.ignore_patterns("mlflow"))
    done = variants("report", "--run-id", "deadbeef", cwd=tmp_path, stubs=stubs)
    assert_short_error(done, 1, "no run deadbeef in the MLflow store sqlite:///")


@pytest.mark.parametrize("flag", ["--verbose", "-v", "--debug"])
def test_verbose_shows_the_whole_traceback(tmp_path: Path, flag: str) -> None:
    done = variants("run", "--data-dir", str(tmp_path / "nowhere"), flag, cwd=tmp_path)
    assert done.code == 1, done.text
    assert done.lines[0] == "Traceback (most recent call last):"
    assert "keras_variants.errors.DataError:" in done.text
    assert done.lines[-1].startswith("error: ") and "data folder not found" in done.lines[-1]


def test_no_command_shows_help(tmp_path: Path, heavy_stubs: Path) -> None:
    done = variants(cwd=tmp_path, stubs=heavy_stubs)
    assert done.code == 0, done.text
    assert "Usage: variants" in done.text and "--verbose" in done.text


# --- the pieces, directly ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("done", "failed", "elapsed", "left", "line"),
    [
        (1, 0, 10.0, 50.4, "1/6 runs done, ~50 s left by this machine's earlier runs"),
        (3, 0, 30.0, None, "3/6 runs done"),  # a run never measured here: no guess
        (6, 0, 61.6, None, "6/6 runs done in 62 s"),
        (1, 1, 20.0, 40.0, "1/6 runs done, 1 failed, ~40 s left by this machine's earlier runs"),
        (4, 2, 61.6, 5.0, "4/6 runs done, 2 failed in 62 s"),
    ],
)
def test_progress_line(done: int, failed: int, elapsed: float, left, line: str) -> None:
    assert progress_line(done, 6, elapsed, failed, left) == line


@pytest.mark.parametrize(
    ("unfinished", "lanes", "left"),
    [
        ([150.0, 20.0, 20.0], 2, 150.0),  # the CNN bounds it: the others fit beside it
        ([20.0, 20.0, 20.0, 20.0], 2, 40.0),  # four equal runs on two lanes
        ([20.0, None], 2, None),  # one never trained here
        ([], 2, 0.0),
    ],
)
def test_seconds_left_from_each_runs_measured_time(unfinished, lanes, left) -> None:
    assert seconds_left(unfinished, lanes) == left


def test_a_tally_counts_failed_runs_apart_and_estimates_from_the_rest() -> None:
    tally = Tally(["cnn", "dense", "l2"], lanes=2, expected={"cnn": 150.0, "l2": 20.0})
    lines = [tally.add("dense", True, 10.0), tally.add("l2", False, 20.0)]
    lines.append(tally.add("cnn", True, 160.4))
    assert lines == [
        "1/3 runs done, ~150 s left by this machine's earlier runs",
        "1/3 runs done, 1 failed, ~150 s left by this machine's earlier runs",
        "2/3 runs done, 1 failed in 160 s",
    ]
    assert Tally(["a", "b"]).add("a", True, 5.0) == "1/2 runs done"  # nothing measured yet


def test_summary_marks_the_best_validation_accuracy_per_data_set() -> None:
    rows = [
        SummaryRow("mnist_dense", "mnist", 0.97, 0.98, 0.07, 5, "r1"),
        SummaryRow("mnist_cnn", "mnist", 0.99, 0.99, 0.03, 4, "r2"),
        SummaryRow("imdb_dense", "imdb", 0.88, 0.85, 0.30, 4, "r3"),
        SummaryRow("imdb_l2", "imdb", 0.87, 0.86, 0.35, 6, "r4"),
    ]
    lines = summary_table(rows)
    assert lines[0].split()[:3] == ["variant", "val", "acc"]
    assert [line.split()[0] for line in lines[1:]] == [
        "mnist_dense", "mnist_cnn*", "imdb_dense*", "imdb_l2",
    ]  # fmt: skip
    assert lines[2].split()[1:] == ["0.9900", "0.9900", "0.0300", "4", "r2"]


def test_summary_prints_a_mean_epoch_as_the_report_does() -> None:
    """Several seeds: the mean epoch of lowest validation loss to one decimal, as the
    report's table prints it (7.0, not 7; 6.6, not 7)."""
    rows = [
        SummaryRow("imdb_dropout", "imdb", 0.88, 0.87, 0.31, 6.6, "mean of 5 seeds"),
        SummaryRow("imdb_l2", "imdb", 0.87, 0.86, 0.35, 7.0, "mean of 5 seeds"),
    ]
    assert [line.split()[4] for line in summary_table(rows)[1:]] == ["6.6", "7.0"]


ML = "workflowType=machine_learning"


def test_mlflow_ui_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command to type (this environment's mlflow, by path when PATH does not find it),
    at the configured address, and a link per data set to the pipeline's variants."""
    from keras_variants import runtime

    compare = (
        "runs?workflowType=machine_learning&searchFilter=tags.%60keras_variants.pipeline_id%60"
        "%20%3D%20%27p1%27%20and%20tags.label%20%21%3D%20%27%27&orderByKey=metrics.%60test%2F"
        "accuracy%60&orderByAsc=false&compareRunsMode=CHART"
    )
    monkeypatch.setattr(runtime, "tool_command", lambda tool: f".venv/bin/{tool}")
    monkeypatch.setenv("VARIANTS_MLFLOW_UI", "http://127.0.0.1:5055")
    local = mlflow_ui_lines("sqlite:////w/mlflow.db", {"mnist": "1", "imdb": "2"}, "p1")
    assert local == [
        "MLflow UI: .venv/bin/mlflow ui --backend-store-uri sqlite:////w/mlflow.db "
        "--host 127.0.0.1 --port 5055",
        f"  mnist variants: http://127.0.0.1:5055/#/experiments/1/{compare}",
        f"  imdb variants: http://127.0.0.1:5055/#/experiments/2/{compare}",
    ]
    server = mlflow_ui_lines("http://mlflow:5000/", {"imdb": "7"}, "p1")
    assert server == [
        "MLflow UI:",
        f"  imdb variants: http://mlflow:5000/#/experiments/7/{compare}",
    ]


def test_the_mlflow_command_is_typed_as_this_environment_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from keras_variants import runtime

    here = Path(sys.executable).parent
    monkeypatch.setenv("PATH", str(here))
    assert runtime.tool_command("mlflow") == "mlflow"  # an activated environment
    monkeypatch.setenv("PATH", str(tmp_path))  # not activated: by path
    monkeypatch.chdir(here.parent)
    assert runtime.tool_command("mlflow") == f"{here.name}/mlflow"
    monkeypatch.chdir(tmp_path)
    assert runtime.tool_command("mlflow") == str(here / "mlflow")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--debug", "--profile", "smoke"], ["--debug", "run", "--profile", "smoke"]),
        (["-v", "report"], ["-v", "report"]),
        (["predict", "--", "-v"], ["predict", "--", "-v"]),  # after --, an input
    ],
)
def test_verbose_flags_move_to_the_front(argv: list[str], expected: list[str]) -> None:
    assert _verbose_flags_first(argv) == expected


def test_error_message_finds_our_error_inside_a_wrapper() -> None:
    try:
        try:
            raise DataError("imdb.npz", "x_train", "row 3 is not a list")
        except DataError as inner:
            raise RuntimeError("task failed") from inner
    except RuntimeError as outer:
        assert error_message(outer) == "imdb.npz: x_train: row 3 is not a list"
    assert error_message(ValueError("boom")).startswith("unexpected ValueError: boom")
    full = OSError(28, "No space left on device", "/m/model.keras")
    assert error_message(full).startswith("no space left on the device writing /m/model.keras")


def _record(name: str, level: int, message: str, exc: BaseException | None = None):
    exc_info = (type(exc), exc, None) if exc else None
    return logging.LogRecord(name, level, __file__, 1, message, None, exc_info)


@pytest.mark.parametrize(
    ("record", "shown"),
    [
        (_record("prefect.task_runs", logging.INFO, "mnist_dense epoch 1/5: loss 0.2"), True),
        (_record("prefect.flow_runs", logging.INFO, "3/6 runs done, ~40 s left"), True),
        (_record("prefect.flow_runs", logging.INFO, "Downloading flow code from storage"), False),
        (_record("asyncio", logging.ERROR, "Exception in callback StreamReaderProtocol"), False),
        (_record("prefect.task_runs", logging.INFO, "Finished in state Completed()"), False),
        (_record("prefect.task_runs", logging.ERROR, "Finished in state Failed('x')"), False),
        (
            _record("prefect.task_runs", logging.ERROR, "failed", DataError("a.npz", None, "bad")),
            False,
        ),
        (_record("prefect.flow_runs", logging.ERROR, "failed", KeyboardInterrupt()), False),
        (
            _record(
                "prefect.flow_runs",
                logging.ERROR,
                "Crash detected! Execution was aborted by a termination signal.",
            ),
            False,
        ),
        (_record("prefect.task_runs", logging.ERROR, "failed: ValueError", ValueError("x")), True),
        (_record("great_expectations.data_context", logging.INFO, "Created temporary dir"), False),
        (_record("tensorflow", logging.WARNING, "triggered tf.function retracing"), False),
        (_record("py.warnings", logging.WARNING, "UserWarning: Decorate your function"), False),
        (_record("prefect", logging.INFO, "Stopping temporary server"), False),
        (_record("distributed.nanny", logging.WARNING, "Worker process still alive"), False),
        (_record("prefect.client", logging.WARNING, "retrying"), True),
    ],
)
def test_quiet_console(record: logging.LogRecord, shown: bool) -> None:
    assert runtime.QuietConsole().filter(record) is shown
    assert record.exc_info is None or not shown  # a shown error loses its traceback


def test_the_commands_process_sends_mlflow_no_telemetry(tmp_path: Path) -> None:
    """Prepared as every command is, a process that imports MLflow has no telemetry client
    (none of MLflow's own signs of a CI or a test, which also turn it off, are passed on)."""
    mlflow_signs = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTEST_CURRENT_TEST", "CI")
    env = {k: v for k, v in os.environ.items() if k not in mlflow_signs}
    code = (
        "from keras_variants import runtime; runtime.prepare(False); import mlflow; "
        "from mlflow.telemetry.client import get_telemetry_client; "
        "print(get_telemetry_client())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert done.stdout.strip() == "None", done.stderr


# --- whole runs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
@tier("system", shared=True)
def quiet_run(data_slices: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Done]:
    """One quiet smoke run of two variants through the command, in its own folder."""
    workdir = tmp_path_factory.mktemp("cli-run")
    site = workdir / "site"
    site.mkdir()
    # What the command's own process imported, written as it exits (not by lane processes).
    (site / "sitecustomize.py").write_text(
        "import atexit, sys\n"
        "if sys.argv and sys.argv[0].endswith('variants'):\n"
        "    atexit.register(lambda: open('modules.txt', 'w').write('\\n'.join(sys.modules)))\n"
    )
    done = variants(
        "run", "--profile", "smoke", "--data-dir", str(data_slices),
        "--variants", "mnist_dense,imdb_reduced", cwd=workdir, PYTHONPATH=str(site),
    )  # fmt: skip
    return workdir, done


def test_the_command_never_imports_tensorflow_itself(quiet_run: tuple[Path, Done]) -> None:
    """Training ran in lane processes: the orchestrating process stayed lean."""
    workdir, done = quiet_run
    assert done.code == 0, done.text
    modules = set((workdir / "modules.txt").read_text().split())
    assert {"prefect", "mlflow", "great_expectations"} <= modules  # it did orchestrate
    assert not {"tensorflow", "keras"} & modules
    assert "prefect.server.api.server" not in modules  # the temporary server loads it alone


def test_the_temporary_prefect_server_ends_with_the_command(quiet_run: tuple[Path, Done]) -> None:
    """The command started Prefect's temporary server in its folder; none is left there."""
    workdir, done = quiet_run
    assert done.code == 0, done.text
    left = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes()
            if b"keras_variants.prefect_server" in command:
                left += [proc.name] if (proc / "cwd").resolve() == workdir.resolve() else []
        except OSError:
            continue  # not a process, or it ended meanwhile
    assert left == []


def test_a_temporary_server_that_cannot_start_is_one_line_naming_its_log(
    tmp_path: Path, data_slices: Path
) -> None:
    """Prefect's temporary server, on a database it cannot create: the command says so in
    one line naming the file its output went to (the server's traceback is there, not on
    the terminal)."""
    done = variants(
        "run", "--profile", "smoke", "--data-dir", str(data_slices), cwd=tmp_path,
        TMPDIR=str(tmp_path),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path}/no/such/db",
    )  # fmt: skip
    assert_short_error(done, 1, "Prefect's temporary server did not start", "its output is in")
    (log,) = tmp_path.glob("variants-prefect-server-*.log")
    assert str(log) in done.lines[0]
    assert "Traceback" in log.read_text()


def test_each_trained_run_records_what_it_cost_the_host(quiet_run: tuple[Path, Done]) -> None:
    """MLflow's system metrics (the host's CPU and memory) on every trained run, however
    short it was: the run page shows what each trial cost (sampled by the command's own
    process, which never imported TensorFlow: above)."""
    from mlflow.tracking import MlflowClient

    workdir, done = quiet_run
    assert done.code == 0, done.text
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.role = 'variant'")
    assert {run.data.tags["variant"] for run in runs} == {"mnist_dense", "imdb_reduced"}
    for run in runs:
        cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
        memory = client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
        assert cpu and memory, sorted(run.data.metrics)
        assert all(0 <= m.value <= 100 for m in cpu)
        assert all(m.value > 0 for m in memory)


NOISE = [
    "oneDNN",  # TensorFlow's C++ banner
    "absl::InitializeLog",
    "NodeDef mentions attribute",
    "tf.function retracing",
    "Created temporary directory",  # Great Expectations
    "Creating initial MLflow database",
    "alembic",
    "Starting temporary server",  # Prefect
    "Stopping temporary server",
    "Finished in state",
    "Warning",
    "Traceback",
]


def test_a_run_is_quiet_and_ends_on_its_summary(quiet_run: tuple[Path, Done]) -> None:
    workdir, done = quiet_run
    assert done.code == 0, done.text
    for noise in NOISE:
        assert noise not in done.text, noise
    assert "2/2 runs done in" in done.text
    assert any(re.search(r"mnist_dense.* epoch 2/2: loss", line) for line in done.lines)
    header = done.lines.index(next(line for line in done.lines if line.startswith("variant ")))
    tail = done.lines[header:]
    assert [line.split()[0] for line in tail[1:3]] == ["mnist_dense*", "imdb_reduced*"]
    assert tail[3].startswith("* best validation accuracy")
    assert tail[4].startswith("mnist-classifier v1: promoted to champion")
    assert tail[5].startswith("imdb-sentiment v1: promoted to champion")
    assert tail[6] == f"report: {workdir}/reports/" + tail[6].split("/reports/")[1]
    assert tail[7].startswith(f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{workdir}")
    assert [line.split()[0] for line in tail[8:]] == ["mnist", "imdb"]
    assert [line.split()[1] for line in tail[8:]] == ["variants:", "variants:"]
    assert all(f"/runs?{ML}&searchFilter=" in line and "compareRunsMode=CHART" in line
               for line in tail[8:])  # fmt: skip
    assert len(tail) == 10


def test_report_needs_neither_tensorflow_nor_prefect(
    quiet_run: tuple[Path, Done], heavy_stubs: Path
) -> None:
    workdir, first = quiet_run
    assert first.code == 0, first.text
    stubs = workdir / "stubs"  # MLflow is what the report is read from
    shutil.copytree(heavy_stubs, stubs, ignore=shutil.ignore_patterns("mlflow"), dirs_exist_ok=True)
    done = variants("report", cwd=workdir, stubs=stubs)
    assert done.code == 0, done.text
    assert done.lines == [f"report: {first.lines[-4].removeprefix('report: ')}"]


def test_a_bad_file_found_while_loading_is_one_error_line(
    data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """A file that opens but holds a broken review: found inside the flow, still no
    traceback, no Prefect failure lines, the error line last."""
    folder = Path(shutil.copytree(data_slices, tmp_path / "data"))
    with np.load(folder / "imdb.npz", allow_pickle=True) as npz:  # trusted: our own slices
        arrays = {k: npz[k] for k in npz.files}
    arrays["x_train"][3] = "not a review"
    np.savez(folder / "imdb.npz", **arrays)
    done = variants("run", "--profile", "smoke", "--data-dir", str(folder), cwd=processes.folder)
    assert done.code == 1, done.text
    assert "Traceback" not in done.text and "Finished in state" not in done.text
    assert done.lines[-1] == (
        "error: imdb.npz: x_train: row 3 is not a list of word ranks "
        "(could not convert string to float: 'n'). Re-create the file."
    )
    assert len(done.lines) <= 4, done.text


def test_promote_dry_run_force_and_rollback(
    quiet_run: tuple[Path, Done], data_slices: Path, tmp_path: Path
) -> None:
    """``variants promote`` on a copy of the quiet run's store, with a v2 of mnist-classifier
    registered from v1's own model (so both score the same): what each command prints and
    the aliases after it. The accuracy printed is the one training logged for mnist_dense
    (the served path reproduces it: test_pipeline)."""
    from mlflow.tracking import MlflowClient

    source, first = quiet_run
    assert first.code == 0, first.text
    workdir = Path(
        shutil.copytree(source, tmp_path / "work", ignore=shutil.ignore_patterns("site"))
    )
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    name = "mnist-classifier"
    v1 = client.get_model_version(name, "1")
    files = {k: v for k, v in v1.tags.items() if k == "files.sha256"}  # checked on load
    model_id = v1.source.removeprefix("models:/")  # a local store resolves no models:/ URI
    location = client.get_logged_model(model_id).artifact_location
    client.create_model_version(name, source=location, run_id=v1.run_id, tags=files)
    accuracy = f"{client.get_run(v1.run_id).data.metrics['test/accuracy']:.4f}"

    def promote(*args: str) -> Done:
        smoke = ["--profile", "smoke", "--data-dir", str(data_slices)]
        return variants("promote", "--model", name, *args, *smoke, cwd=workdir)

    def aliases() -> dict[str, str]:
        return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}

    before = aliases()
    assert before == {"challenger": "1", "champion": "1"}  # the quiet run's first champion

    # The same model twice: no input on which one is right and the other wrong; the 500
    # test rows of the smoke profile on the slices (test_pipeline: its confusion matrix).
    same = (
        f"right on 0 inputs champion v1 got wrong, wrong on 0 it got right (test accuracy "
        f"{accuracy} vs {accuracy} on 500 inputs, gain +0.0000), McNemar exact p = 1: the gain "
        "is not more than the margin 0"
    )
    done = promote("--version", "2", "--dry-run")
    assert done.code == 0, done.text
    assert done.lines[-1] == f"[dry run] {name} v2: not promoted: {same}"
    assert aliases() == before
    tags = client.get_model_version(name, "2").tags
    assert not any(k.startswith(("promotion.", "gate.")) for k in tags)

    done = promote("--version", "2", "--dry-run", "--force")
    assert done.code == 0, done.text
    assert done.lines[-1] == f"[dry run] {name} v2: promoted to champion: {same} (forced)"
    assert aliases() == before

    done = promote("--version", "2", "--force")
    assert done.code == 0, done.text
    assert done.lines[-1] == f"{name} v2: promoted to champion: {same} (forced)"
    assert aliases() == {"challenger": "1", "champion": "2", "previous": "1"}

    done = promote("--rollback")
    assert done.code == 0, done.text
    assert done.lines[-1] == f"{name} v1: promoted to champion: rollback from v2"
    assert aliases() == before
    assert client.get_model_version(name, "2").tags["promotion.decision"] == "rolled back"

    done = promote("--rollback")
    assert_short_error(done, 1, f"{name} has no 'previous' version to roll back to")
    assert aliases() == before


def test_score_help_says_how_digit_images_are_laid_out(tmp_path: Path, heavy_stubs: Path) -> None:
    """A user's images of any size, 28x28 included, are brought to MNIST's layout: the help
    says so, in the words the model card uses (one definition, data/layout.py)."""
    from keras_variants.data.layout import IMAGE_LAYOUT

    done = variants("score", "--help", cwd=tmp_path, stubs=heavy_stubs)
    assert done.code == 0, done.text
    flat = " ".join(done.text.replace("│", " ").split())
    assert "Digits (mnist-classifier): " + " ".join(IMAGE_LAYOUT.split()) in flat
    assert "a 28x28 resize" in flat and "into 20x20 keeping its aspect ratio" in flat
