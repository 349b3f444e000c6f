"""`variants serve` follows its alias: a promotion is loaded and verified beside the served
version and switched to with no request failed; a version that does not verify leaves the
old one serving and says so.

The rule is a table test; the swap is tested in process on the real ASGI app with a
predictor that names its version; the whole is tested on the real `variants serve` process,
loaded by clients while the alias moves in a real MLflow store."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from keras_variants.serving.follow import Follower, next_version
from tests.helpers import BIN, Processes, free_port, wait_for

MODEL = "imdb-sentiment"
REVIEW = "A wonderful film, I loved every minute of it."


@pytest.mark.parametrize(
    ("serving", "named", "failed", "expected"),
    [
        ("1", "1", None, None),  # the alias has not moved
        ("1", "2", None, "2"),  # promoted
        ("2", "1", None, "1"),  # rolled back: any move is followed, not only upwards
        ("1", None, None, None),  # the alias could not be read: keep serving
        ("1", "2", "2", None),  # v2 failed to load: not tried again while the alias is on it
        ("1", "3", "2", "3"),  # the alias moved on from the failed version
    ],
)
def test_which_version_to_load_next(serving, named, failed, expected) -> None:
    assert next_version(serving, named, failed) == expected


def _app_serving(version: str):
    from keras_variants.serving.answers import Sentiment
    from keras_variants.serving.server import Limits, ScoringApp, Served, ServedVersion

    def served(number: str) -> Served:
        def predict(inputs, params):
            return [Sentiment.of(int(number) / 10)] * len(inputs), None

        return Served(predict, ServedVersion(MODEL, number))

    first = served(version)
    return ScoringApp(first.predictor, first.version, Limits(max_concurrent=2)), served


def test_a_switch_answers_later_requests_with_the_new_version_and_a_failed_load_keeps_the_old(
    caplog,
) -> None:
    """One look of the follower at a time, on the real app: the alias moves to v2 (loaded,
    switched), to v3 (fails to load: v2 keeps answering, one line says why, and v3 is not
    tried again), then cannot be read (one line), then moves to v4."""
    app, served = _app_serving("1")
    alias = {"now": "1"}
    loads: list[str] = []

    def load(number: str):
        loads.append(number)
        if number == "3":
            raise RuntimeError("imdb-sentiment v3: served_model.py was changed since it was "
                               "registered")  # fmt: skip
        return served(number)

    def resolve() -> str:
        if alias["now"] == "gone":
            raise LookupError("imdb-sentiment has no 'champion'")
        return alias["now"]

    follower = Follower(app, "champion", resolve, load, interval=60)

    def ask() -> tuple[str, float]:
        async def post():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                return await http.post("/invocations", json={"inputs": [REVIEW]})

        answer = asyncio.run(post())
        assert answer.status_code == 200, answer.text
        return answer.headers["x-model-version"], answer.json()["predictions"][0]["probability"]

    with caplog.at_level(logging.INFO, logger="keras_variants.follow"):
        assert follower.check() is None and ask() == ("1", 0.1)
        alias["now"] = "2"
        assert follower.check() == "2" and ask() == ("2", 0.2)
        alias["now"] = "3"
        assert follower.check() is None and follower.check() is None
        assert ask() == ("2", 0.2) and app.served.version == "2"
        alias["now"] = "gone"
        assert follower.check() is None and follower.check() is None
        alias["now"] = "4"
        assert follower.check() == "4" and ask() == ("4", 0.4)
    app.workers.shutdown()
    assert loads == ["2", "3", "4"]
    lines = [r.getMessage() for r in caplog.records]
    assert sum("v3 failed to load or verify" in line for line in lines) == 1, lines
    assert any("still serving v2" in line and "was changed" in line for line in lines)
    assert sum("cannot read 'champion'" in line for line in lines) == 1, lines
    assert any("now serving v4 (was v2" in line for line in lines), lines


@pytest.fixture
def three_versions(tmp_path: Path, data_slices: Path) -> tuple[str, MlflowClient]:
    """A new store whose imdb-sentiment has three versions, each a real served model
    (untrained, weights from its own seed: only which one answers counts), v1 the champion;
    v3's code file was changed after it was registered."""
    from keras_variants.config.variants import VARIANTS
    from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE
    from keras_variants.model.builders import build_model
    from keras_variants.registry.versions import files_record
    from keras_variants.serving import saving

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    client.create_registered_model(MODEL)
    variant = VARIANTS["imdb_dense"]
    for seed in (1, 2, 3):
        folder = tmp_path / "models" / f"v{seed}"
        saving.save_model(folder, variant, build_model(variant, seed=seed), REVIEW,
                          data_slices / IMDB_WORD_INDEX_FILE, saving.requirements())  # fmt: skip
        source = folder.as_uri()
        client.create_model_version(MODEL, source, tags=files_record(client, source))
    code = tmp_path / "models" / "v3" / saving.MODEL_CODE_FILE
    code.write_text(code.read_text() + "\n# changed\n")
    client.set_registered_model_alias(MODEL, "champion", "1")
    return uri, client


def test_a_promotion_under_load_switches_with_no_failed_request_and_a_bad_one_is_refused(
    three_versions, processes: Processes
) -> None:
    """The real `variants serve` on the champion, four clients sending reviews one after
    another throughout: the alias moves to v2 and every answer is 200, each client sees
    v1 then v2 (never back), /version says v2; the alias moves to the tampered v3 and v2
    goes on answering, the log saying why."""
    uri, client = three_versions
    port = free_port()
    log = processes.folder / "serve.log"
    args = [
        str(BIN / "variants"), "serve", "--model", MODEL, "--port", str(port),
        "--follow-every", "0.5", "--max-concurrent", "2", "--max-queue", "4", "--timeout", "60",
    ]  # fmt: skip
    env = processes.env(MLFLOW_TRACKING_URI=uri)
    with log.open("w") as out:
        proc = processes.start(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def version() -> str:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()[-2000:]}")
        return httpx.get(f"{url}/version", timeout=5).json()["version"]

    wait_for(lambda: version() == "1", 180, "variants serve on v1")
    stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]

    def load(answers: list[tuple[int, str]]) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while not stop.is_set():
                answer = http.post("/invocations", json={"inputs": [REVIEW]})
                answers.append((answer.status_code, answer.headers.get("x-model-version", "")))

    clients = [threading.Thread(target=load, args=(answers,)) for answers in seen]
    for thread in clients:
        thread.start()
    try:
        wait_for(lambda: all(len(a) >= 3 for a in seen), 120, "answers from v1")
        client.set_registered_model_alias(MODEL, "champion", "2")
        wait_for(lambda: all(a and a[-1][1] == "2" for a in seen), 180, "answers from v2")
        counts = [len(a) for a in seen]
        wait_for(lambda: all(len(a) >= n + 2 for a, n in zip(seen, counts, strict=True)), 120,
                 "more answers from v2")  # fmt: skip
        client.set_registered_model_alias(MODEL, "champion", "3")
        wait_for(lambda: "v3 failed to load or verify" in log.read_text(), 180, "v3 refused")
        counts = [len(a) for a in seen]
        wait_for(lambda: all(len(a) >= n + 2 for a, n in zip(seen, counts, strict=True)), 120,
                 "answers after v3 was refused")  # fmt: skip
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=180)
    assert version() == "2"
    for answers in seen:
        assert {status for status, _ in answers} == {200}, answers
        versions = [v for _, v in answers]
        switch = versions.index("2")
        assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}, versions
    text = log.read_text()
    assert "now serving v2 (was v1" in text
    assert "served_model.py was changed" in text and "still serving v2" in text
    assert "Traceback" not in text
