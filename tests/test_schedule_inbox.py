"""``variants schedule --score-inbox`` against a real ``prefect server start`` and a real
HTTP receiver, on the smoke run's registered digit model."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import httpx
import numpy as np

from tests.helpers import BIN, Processes, free_port, process, wait_for
from tests.test_schedule import _when, receiver


def _digits(folder: Path, images: np.ndarray) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"digit-{i:03d}.png")
    return folder


def test_inbox_scores_each_input_once_one_run_at_a_time_and_notifies(
    smoke_run, smoke_config, data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """Three inputs dropped at once (digits, digits turned 90 degrees, a text file that is no
    input for the digit model): never two scoring runs at once; the good ones scored into
    scored/<name>/ and moved to done/, the bad one in failed/ with its reason; the receiver
    gets ``drift`` and ``failed``. Stopped and started again, the schedule scores what waits
    (and what a stopped run had taken) once."""
    shutil.copy(smoke_config.tracking_uri.removeprefix("sqlite:///"), tmp_path / "mlflow.db")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = processes.env(PREFECT_API_URL=api)
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    inbox, staging = tmp_path / "inbox", tmp_path / "staging"
    inbox.mkdir()
    with np.load(data_slices / "mnist.npz") as mnist:
        images = mnist["x_test"][:200]
    _digits(staging / "good", images[:100])
    # Turned digits drift (their bounding boxes, the answers); inverted ones would not: a light
    # background is inverted back on the way in (pixels_from_image).
    _digits(staging / "turned", np.rot90(images[100:], axes=(1, 2)))
    (staging / "bad.txt").write_text("a review is no input for the digit model\n")
    schedule = [
        str(BIN / "variants"), "schedule", "--score-inbox", str(inbox),
        "--model", "mnist-classifier", "--notify", "URL", "--tracking-uri", tracking,
    ]  # fmt: skip
    with (
        receiver() as (url, received),
        process(server, env, tmp_path, tmp_path / "server.log"),
        httpx.Client(base_url=api, timeout=10) as http,
    ):
        schedule[schedule.index("URL")] = url
        wait_for(lambda: http.get("/health").status_code == 200, 180, "the Prefect server")
        log = tmp_path / "schedule.log"
        with process(schedule, env, tmp_path, log):
            wait_for(lambda: "Prefect UI:" in log.read_text(), 180, "the schedule")
            for name in ("good", "turned", "bad.txt"):
                os.rename(staging / name, inbox / name)  # all three at once
            wait_for(
                lambda: (
                    {p.name for p in (inbox / "done").glob("*")} == {"good", "turned"}
                    and (inbox / "failed" / "bad.txt").exists()
                ),
                600,
                "the three inputs to be scored or refused",
            )
            for event in ("failed", "drift"):  # each on its own: a timeout names the one missing
                wait_for(
                    lambda e=event: e in {m["event"] for m in received}, 120, f"{event} message"
                )
        # Stopped: one input arrives, one was taken by a run that was stopped.
        _digits(inbox / "late", images[:50])
        _digits(inbox / ".scoring" / "taken", images[50:100])
        with process(schedule, env, tmp_path, tmp_path / "schedule-2.log"):
            wait_for(
                lambda: {p.name for p in (inbox / "done").glob("*")} >= {"late", "taken"},
                600,
                "the waiting inputs to be scored after the restart",
            )
        (deployment,) = http.post("/deployments/filter", json={}).json()
        query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}
        runs = http.post("/flow_runs/filter", json=query).json()
    started = sorted((r for r in runs if r["start_time"]), key=lambda r: r["start_time"])
    for before, after in itertools.pairwise(started):
        assert _when(after["start_time"]) >= _when(before["end_time"])  # never in parallel
    assert sorted(p.name for p in (inbox / "scored").iterdir()) == [
        "good",
        "late",
        "taken",
        "turned",
    ]  # fmt: skip  (each once: a second scoring would have made good-2 and so on)
    assert sorted(p.name for p in (inbox / "done").iterdir()) == [
        "good",
        "late",
        "taken",
        "turned",
    ]
    summary = json.loads((inbox / "scored" / "good" / "summary.json").read_text())
    assert summary["rows"] == 100 and summary["model"]["name"] == "mnist-classifier"
    reason = (inbox / "failed" / "bad.txt.reason.txt").read_text()
    assert "bad.txt" in reason
    failed = next(m for m in received if m["event"] == "failed")
    assert failed["deployment"] == "score-mnist-classifier"
    assert failed["model"] == "mnist-classifier" and "bad.txt" in failed["reason"]
    drift = next(m for m in received if m["event"] == "drift")
    assert drift["model"] == "mnist-classifier" and drift["reason"].startswith("turned: ")
    assert not [m for m in received if m["event"] == "drift" and "good" in m["reason"]]


def test_an_unreachable_notify_url_neither_fails_nor_slows_a_run(
    smoke_run, smoke_config, data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """``--notify`` at a closed port: the schedule says so once when it starts and serves as
    usual; a refused input fails its run by itself (the server's webhook action fails and
    logs it, after the run), and the next input is scored in a run that completes."""
    shutil.copy(smoke_config.tracking_uri.removeprefix("sqlite:///"), tmp_path / "mlflow.db")
    port, closed = free_port(), free_port()  # nothing listens on the second
    api = f"http://127.0.0.1:{port}/api"
    env = processes.env(PREFECT_API_URL=api)
    server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with np.load(data_slices / "mnist.npz") as mnist:
        images = mnist["x_test"][:20]
    url = f"http://127.0.0.1:{closed}/hook"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    schedule = [
        str(BIN / "variants"), "schedule", "--score-inbox", str(inbox),
        "--model", "mnist-classifier", "--notify", url, "--tracking-uri", tracking,
    ]  # fmt: skip
    server_log, log = tmp_path / "server.log", tmp_path / "schedule.log"
    with (
        process(server, env, tmp_path, server_log),
        httpx.Client(base_url=api, timeout=10) as http,
    ):
        wait_for(lambda: http.get("/health").status_code == 200, 180, "the Prefect server")
        with process(schedule, env, tmp_path, log):
            wait_for(lambda: "Prefect UI:" in log.read_text(), 180, "the schedule")
            (tmp_path / "bad.txt").write_text("a review is no input for the digit model\n")
            os.rename(tmp_path / "bad.txt", inbox / "bad.txt")
            wait_for(lambda: (inbox / "failed" / "bad.txt").exists(), 300, "bad.txt refused")
            _digits(tmp_path / "staging" / "good", images)
            os.rename(tmp_path / "staging" / "good", inbox / "good")
            wait_for(lambda: (inbox / "done" / "good").exists(), 300, "good to be scored")
            lost = "Webhook call failed"  # the server's action, logged by the server
            wait_for(lambda: lost in server_log.read_text(), 60, "the lost message logged")
            (deployment,) = http.post("/deployments/filter", json={}).json()
            query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}}

            def ended() -> list[dict]:  # the folder moves before the run reports its end
                runs = http.post("/flow_runs/filter", json=query).json()
                return [r for r in runs if r["end_time"]]

            wait_for(lambda: len(ended()) >= 2, 60, "both runs to end")
            runs = ended()
    text = log.read_text()
    assert text.count(f"cannot reach {url}") == 1, text
    assert "Webhook" not in text  # the lost message is the server's business, not the run's
    # Quiet by default: each run's own lines, a refusal in one line, no Prefect bookkeeping.
    assert "bad.txt: not scored: " in text and "1 of 1 inputs not scored" in text
    assert "Traceback" not in text and "Finished in state" not in text, text
    ended = sorted((r for r in runs if r["end_time"]), key=lambda r: r["start_time"])
    assert [r["state_type"] for r in ended][-2:] == ["FAILED", "COMPLETED"]
    for run in ended:  # a scoring of one small input: seconds, never a network timeout
        assert run["total_run_time"] < 60, run
    assert (inbox / "scored" / "good" / "summary.json").exists()
