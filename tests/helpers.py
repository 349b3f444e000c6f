"""Helpers for tests that start real servers and processes on loopback ports, and the
tiers a fixture sorts its tests into."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent

# Fixture name -> the tier its tests belong to, and the fixtures whose tests share one
# xdist worker; filled by @tier where each fixture is defined, read by tests/conftest.py.
TIERS: dict[str, str] = {}
SHARED: list[str] = []


def tier(name: str, shared: bool = False) -> Callable:
    """Sort every test that uses the decorated fixture, directly or through another fixture,
    into tier ``name``: "slow" (a server or a training run in this process) or "system"
    (the real command, servers or tools in subprocesses; slow too). ``shared``: the fixture
    is built once per worker and costs minutes, so its tests all go to one xdist worker.
    Put it under ``@pytest.fixture``."""
    if name not in ("slow", "system"):
        raise ValueError(f"tier {name!r}: use 'slow' or 'system'")

    def sort(fixture: Callable) -> Callable:
        known = fixture.__name__ in TIERS
        if known and (TIERS[fixture.__name__] != name or shared or fixture.__name__ in SHARED):
            raise ValueError(
                f"fixture {fixture.__name__!r} is sorted elsewhere too: its tests would go "
                "with the other one's; name one of them differently"
            )
        TIERS[fixture.__name__] = name
        if shared:
            SHARED.append(fixture.__name__)
        return fixture

    return sort


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    """``check()``'s first true result, asked again after 0.1 s, then less often (1 s at
    most): a server that answers in 2 s is seen in about 2 s, not 3."""
    deadline = time.monotonic() + timeout
    pause = 0.1
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, KeyError, IndexError):
            result = None
        if result:
            return result
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def process(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[None]:
    """Run ``args`` in its own process group and always stop the whole group."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield
        finally:
            stop_group(proc)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to ``proc``'s process group; SIGKILL if it has not ended within 30 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a command a test starts: this session's, less its PREFECT_ and
    MLFLOW_ settings, with a Prefect home of the test's own whose database is already
    created, as on a machine where Prefect has run before (:func:`prefect_database`), and
    Prefect's results (the data checks' cache) kept where this test process keeps them, as
    a user's stay in ``~/.prefect/storage`` from run to run: the checks of the same data
    run once per test process, then again only on data a test changed."""
    env = _without_session_settings()
    # As in an activated environment: servers exec tools by name (mlflow: uvicorn).
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    home = tmp_path / "prefect-home"
    if not (home / "prefect.db").exists():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(prefect_database(), home / "prefect.db")
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(prefect_database().parent / "storage"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        GX_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        # An MLflow server without its job runner, as scripts/stack starts it (its
        # consumers, for GenAI features the project does not use, import MLflow each).
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    return env | extra


def _without_session_settings() -> dict[str, str]:
    """This process's environment without the PREFECT_ and MLFLOW_ settings of the session."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}


@functools.cache
def prefect_database() -> Path:
    """A Prefect server database as a server's first start leaves it (tables created, block
    types registered), made once per test process by starting the server this tool starts:
    a command whose Prefect home has it skips that work (its server answered after 3.7 s
    of CPU instead of 8.2), as every run after a user's first one does."""
    home = Path(tempfile.mkdtemp(prefix="prefect-template-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    port = free_port()
    env = _without_session_settings()
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    command = [sys.executable, "-m", "keras_variants.prefect_server", str(port)]
    with process(command, env, home, home / "server.log"):
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200,
            180,
            f"Prefect's server to create its database (its log: {home / 'server.log'})",
        )
    database = home / "template.db"
    source, copy = sqlite3.connect(home / "prefect.db"), sqlite3.connect(database)
    with contextlib.closing(source), contextlib.closing(copy):
        source.backup(copy)  # one file, the write-ahead log folded in
    return database


class Processes:
    """Starts the real command, servers and tools for one test: each in a process group of
    its own, with an environment of its own (PREFECT_HOME under the test's folder, no
    PREFECT_/MLFLOW_ setting of this session); the test's end stops every group still
    running."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen] = []

    def env(self, folder: Path | None = None, **extra: str) -> dict[str, str]:
        return subprocess_env(folder or self.folder, **extra)

    def start(self, args: list[str], **options) -> subprocess.Popen:
        options.setdefault("env", self.env())
        options.setdefault("cwd", self.folder)
        proc = subprocess.Popen(args, start_new_session=True, **options)
        self.started.append(proc)
        return proc

    def run(self, args: list[str], timeout: float = 600, **options) -> subprocess.CompletedProcess:
        options.setdefault("env", self.env())
        options.setdefault("cwd", self.folder)
        options.setdefault("capture_output", True)
        options.setdefault("text", True)
        return subprocess.run(args, timeout=timeout, **options)

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    stop_group(proc)


def process_wide_mlflow_uri(monkeypatch, uri: str) -> None:
    """Point MLflow's process-wide tracking and registry URIs at ``uri`` for one test (for
    MLflow calls that take no client); ``monkeypatch`` restores both, and their
    environment variables, afterwards."""
    import mlflow

    from keras_variants import compat

    for module, name in compat.process_wide_uri_slots():
        monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def declared_png(width: int, height: int) -> bytes:
    """A PNG of ~60 bytes whose header declares ``width`` x ``height`` pixels (a
    decompression bomb when large): a valid signature, IHDR, an empty IDAT and IEND."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
