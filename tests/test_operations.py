"""The schedule's pure pieces: the notify message as the server renders it, and the rules
that decide when a watched file is ready or changed."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from keras_variants.errors import ConfigError, InputError
from keras_variants.operations import inbox, notify, watch
from tests.test_cli import assert_short_error, variants
from tests.test_cli import heavy_stubs as heavy_stubs  # a fixture

UI, MLFLOW = "http://127.0.0.1:4200", "http://127.0.0.1:5000"
RUN_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")


def _run(state: str, message: str | None) -> SimpleNamespace:
    return SimpleNamespace(
        id=RUN_ID, name="wise-fox", state=SimpleNamespace(name=state, message=message)
    )


@pytest.mark.parametrize(
    ("state", "message", "reason"),
    [
        ("Failed", "Flow run encountered an exception: ValueError: x\nmore", "Flow run "
         "encountered an exception: ValueError: x more"),
        ("Crashed", None, "Crashed"),
        ("Failed", 'a "quoted" {brace}', 'a "quoted" {brace}'),
    ],
)  # fmt: skip
def test_a_failed_or_crashed_run_renders_one_json_line(state, message, reason) -> None:
    template = notify.message_template("run-end", "score-inbox", "imdb-sentiment", UI, MLFLOW)
    sent = json.loads(notify.render(template, {"flow_run": _run(state, message)}))
    assert sent == {
        "event": state.lower(),
        "deployment": "score-inbox",
        "flow_run": "wise-fox",
        "model": "imdb-sentiment",
        "version": None,
        "reason": reason,
        "prefect_url": f"{UI}/runs/flow-run/{RUN_ID}",
        "mlflow_url": MLFLOW,
    }


@pytest.mark.parametrize(
    ("kind", "link", "expected_link"),
    [
        ("promoted", f"{MLFLOW}/#/models/m/versions/3", f"{MLFLOW}/#/models/m/versions/3"),
        ("drift", None, MLFLOW),
    ],
)
def test_a_model_event_carries_its_model_version_and_reason(kind, link, expected_link) -> None:
    template = notify.message_template(kind, "scheduled", None, UI, MLFLOW)
    event = SimpleNamespace(
        payload={"model": "m", "version": "3", "reason": "r" * 400, "mlflow_url": link}
    )
    sent = json.loads(notify.render(template, {"flow_run": _run("Running", None), "event": event}))
    assert (sent["event"], sent["model"], sent["version"]) == (kind, "m", "3")
    assert sent["mlflow_url"] == expected_link
    assert len(sent["reason"]) <= notify.REASON_CHARS  # one line, bounded
    assert list(sent) == list(notify.FIELDS)


@pytest.mark.parametrize("url", ["ftp://host/x", "hooks.example.com", "http://"])
def test_a_notify_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http"):
        notify.check_url(url)


def test_an_unreachable_url_says_why() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert notify.unreachable(f"http://127.0.0.1:{port}/") is not None


@pytest.mark.parametrize(
    ("previous", "current", "ready"),
    [
        ({}, {"a": (1, 1)}, []),  # first look: nothing is known to be finished
        ({"a": (1, 1)}, {"a": (1, 1)}, ["a"]),
        ({"a": (1, 1)}, {"a": (2, 2)}, []),  # still growing
        ({"a": (1, 1)}, {"a": (1, 2)}, []),  # rewritten, same size
        ({"a": (1, 1), "b": (5, 5)}, {"a": (1, 1)}, ["a"]),  # b moved away
    ],
)
def test_an_entry_is_ready_once_it_stops_changing(previous, current, ready) -> None:
    assert watch.stable(previous, current) == ready


@pytest.mark.parametrize(
    ("known", "digests", "changed"),
    [
        ({"a": "1"}, {"a": "1"}, []),
        ({"a": "1"}, {"a": "2"}, ["a"]),
        ({"a": "1"}, {"b": "3"}, ["b"]),  # a new file is a change
    ],
)
def test_a_file_changed_when_its_digest_did(known, digests, changed) -> None:
    assert watch.changed(known, digests) == changed


def _look(watcher: watch.Watcher, previous: watch.Listing) -> watch.Listing:
    current = watch.listing(watcher.folder, watch.INBOX_FOLDERS)
    watcher._look(previous, current)
    return current


def test_the_data_watcher_reports_a_new_digest_once(tmp_path: Path) -> None:
    (tmp_path / "mnist.npz").write_bytes(b"one")
    seen: list[tuple[list[str], dict[str, str]]] = []
    watcher = watch.data_watcher(tmp_path, 1, lambda files, digests: seen.append((files, digests)))
    listing = _look(watcher, _look(watcher, {}))  # the starting point
    assert seen == []
    (tmp_path / "mnist.npz").write_bytes(b"two")
    os.utime(tmp_path / "mnist.npz", ns=(1, 1))
    listing = _look(watcher, listing)  # being written: not yet
    assert seen == []
    listing = _look(watcher, _look(watcher, listing))
    assert seen == [(["mnist.npz"], {"mnist.npz": watch.sha256(tmp_path / "mnist.npz")})]


def test_the_inbox_watcher_announces_each_arrival_once(tmp_path: Path) -> None:
    seen: list[list[str]] = []
    watcher = watch.inbox_watcher(tmp_path, 1, seen.append)
    (tmp_path / "a.txt").write_text("good\n")
    (tmp_path / "done").mkdir()
    (tmp_path / ".hidden").write_text("x")
    listing = _look(watcher, _look(watcher, {}))
    listing = _look(watcher, listing)
    assert seen == [["a.txt"]]
    (tmp_path / "a.txt").unlink()
    (tmp_path / "a.txt").write_text("again\n")  # same name, after the first was scored
    listing = _look(watcher, _look(watcher, listing))
    assert seen == [["a.txt"], ["a.txt"]]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            InputError("/in/.scoring/bad.txt holds review texts, and the model scores digits"),
            "bad.txt holds review texts, and the model scores digits",
        ),
        (ValueError("line 1\n  line 2"), "ValueError: line 1 line 2"),
    ],
)  # fmt: skip
def test_a_refused_input_s_reason_is_one_line_naming_it_by_its_name(error, reason) -> None:
    """The taken path (``.scoring/``) is gone by the time anyone reads the reason."""
    assert inbox.reason_for(error, Path("/in/.scoring/bad.txt")) == reason


# --- variants schedule's mistakes: one short line each -------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ((), ["nothing to schedule", "--score-inbox DIR --model NAME"]),
        (("--score-inbox", "nowhere", "--model", "mnist-classifier"), ["nowhere: no such folder"]),
        (("--score-inbox", "."), ["go together"]),
        (("--cron", "* * * * *", "--notify", "ftp://x"), ["--notify", "not an http(s) URL"]),
    ],
)
def test_a_schedule_mistake_is_one_line_before_any_library(
    args, fragments, tmp_path: Path, heavy_stubs: Path
) -> None:
    done = variants("schedule", *args, cwd=tmp_path, stubs=heavy_stubs)
    assert_short_error(done, 2, *fragments)


def test_an_unknown_model_is_named_before_the_server_is_asked(tmp_path: Path) -> None:
    done = variants("schedule", "--score-inbox", ".", "--model", "resnet", cwd=tmp_path)
    assert_short_error(done, 2, "unknown model 'resnet'", "mnist-classifier")


@pytest.mark.parametrize("api", [None, "closed"])
def test_without_a_prefect_server_one_line_says_how_to_start_one(api, tmp_path: Path) -> None:
    env, command = {}, "'prefect server start --host 127.0.0.1'"
    if api == "closed":
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        command = f"'prefect server start --host 127.0.0.1 --port {port}'"
    (tmp_path / "inbox").mkdir()
    done = variants(
        "schedule", "--score-inbox", "inbox", "--model", "mnist-classifier", cwd=tmp_path, **env
    )
    assert_short_error(done, 2, command, "PREFECT_API_URL")
    assert len(done.lines) == 1, done.text


@pytest.mark.parametrize(
    ("api", "hint"),
    [
        (None, "'prefect server start --host 127.0.0.1' and set PREFECT_API_URL=http://127.0.0.1:4200/api"),
        ("http://127.0.0.1:4300/api", "'prefect server start --host 127.0.0.1 --port 4300'"),
        ("http://localhost:4200/api", "'prefect server start --host localhost --port 4200'"),
        ("https://prefect.example.com/api", "start it on prefect.example.com, or point"),
    ],
)  # fmt: skip
def test_the_hint_starts_a_server_where_the_api_url_points(api, hint) -> None:
    from keras_variants.operations.runner import start_server_hint

    assert hint in start_server_hint(api)


def test_the_command_in_the_hint_exists() -> None:
    """What the one line tells a user to run is a real command of the installed Prefect."""
    import subprocess

    from tests.helpers import BIN

    done = subprocess.run(
        [str(BIN / "prefect"), "server", "start", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "--host" in done.stdout and "--port" in done.stdout
