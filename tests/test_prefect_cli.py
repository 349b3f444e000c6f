"""Prefect's own listing commands against a real ``prefect server start``.

With fastapi >= 0.151 they failed with HTTP 422 (the client sends ``"limit": null``); see the
fastapi pin in pyproject.toml.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import BIN, free_port, process, subprocess_env, tier, wait_for


@pytest.mark.parametrize(
    "command",
    [["deployment", "ls"], ["flow-run", "ls"], ["flow", "ls"], ["work-pool", "ls"]],
    ids=" ".join,
)
def test_prefect_listing_commands_work_against_a_real_server(
    prefect_cli_server: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    done = subprocess.run(
        [str(BIN / "prefect"), *command],
        env=prefect_cli_server,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "422" not in done.stdout + done.stderr


@pytest.fixture(scope="module")
@tier("system", shared=True)
def prefect_cli_server(tmp_path_factory: pytest.TempPathFactory):
    """A real Prefect server on a free loopback port; yields the environment that uses it."""
    folder = tmp_path_factory.mktemp("prefect-cli")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = subprocess_env(folder, PREFECT_API_URL=api)
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with process(server, env, folder, folder / "server.log"):
        wait_for(lambda: httpx.get(f"{api}/health").status_code == 200, 180, "Prefect server")
        yield env
