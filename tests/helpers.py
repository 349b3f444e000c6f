"""Helpers for tests that start real servers and processes on loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx.HTTPError, KeyError, IndexError):
            result = None
        if result:
            return result
        time.sleep(1)
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
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    # As in an activated environment: servers exec tools by name (mlflow: uvicorn).
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        GX_ANALYTICS_ENABLED="false",
        **extra,
    )
    return env


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
