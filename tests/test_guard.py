"""The guarded champion: MLflow's webhook signature and body as the receiver reads them, who
moved the alias and whether a move by hand stands (table tests); the receiver as a hostile
client meets it (in process); and the review on a real store under ``tmp_path`` with real
served models: one trained a little (right on ~80% of the test reviews) and untrained ones
(~50%)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from keras_variants.operations.guard_receiver import MAX_BODY_BYTES, PATH, GuardReceiver
from keras_variants.operations.mlflow_webhooks import (
    BadDelivery,
    ChampionMove,
    champion_move,
    signature_problem,
)
from keras_variants.registry.guard import placed_by, verdict
from keras_variants.registry.promotion_rule import Evidence
from tests.helpers import tier
from tests.test_cli import assert_short_error, heavy_stubs, variants

__all__ = ["heavy_stubs"]  # the fixture, from tests/test_cli.py

SECRET = "a-webhook-secret-for-tests-0123456789"
NOW = 1_800_000_000
CANARY = "zqxcanary7731"
MODELS = frozenset({"imdb-sentiment", "mnist-classifier"})


def signed(body: bytes, secret: str = SECRET, stamp: int = NOW, delivery: str = "d-1") -> dict:
    """The headers MLflow's own delivery code sends with ``body``."""
    from mlflow.webhooks.delivery import _generate_hmac_signature  # the signer MLflow uses

    signature = _generate_hmac_signature(secret, delivery, str(stamp), body.decode())
    return {
        "x-mlflow-signature": signature,
        "x-mlflow-timestamp": str(stamp),
        "x-mlflow-delivery-id": delivery,
    }


def alias_body(name: str = "imdb-sentiment", alias: str = "champion", version: str = "3") -> bytes:
    data = {"name": name, "alias": alias, "version": version}
    stamp = "2026-12-06T12:00:00+00:00"
    message = {"entity": "model_version_alias", "action": "created", "timestamp": stamp}
    return json.dumps(message | {"data": data}).encode()


BODY = alias_body()


@pytest.mark.parametrize(
    ("case", "headers", "body", "problem"),
    [
        ("as MLflow signs it", signed(BODY), BODY, None),
        ("another secret", signed(BODY, secret="another-secret-0123456789"), BODY, "match"),
        ("the body changed", signed(BODY), alias_body(version="4"), "match"),
        ("no signature", {**signed(BODY), "x-mlflow-signature": ""}, BODY, "not signed"),
        ("no delivery id", {**signed(BODY), "x-mlflow-delivery-id": ""}, BODY, "not signed"),
        ("another delivery id", {**signed(BODY), "x-mlflow-delivery-id": "d-2"}, BODY, "match"),
        ("ten minutes old", signed(BODY, stamp=NOW - 600), BODY, "away from now"),
        ("from the future", signed(BODY, stamp=NOW + 600), BODY, "away from now"),
        ("a timestamp not a number", {**signed(BODY), "x-mlflow-timestamp": "x"}, BODY, "Unix"),
        (
            "another scheme",
            {**signed(BODY), "x-mlflow-signature": "v2," + signed(BODY)["x-mlflow-signature"][3:]},
            BODY,
            "match",
        ),
        ("garbage", {**signed(BODY), "x-mlflow-signature": CANARY}, BODY, "match"),
    ],
)
def test_a_delivery_is_taken_only_when_signed_with_our_secret(case, headers, body, problem):
    found = signature_problem(SECRET, headers, body, now=NOW + 5)
    assert (found is None) if problem is None else (problem in found), (case, found)
    assert found is None or CANARY not in found


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("case", "body", "expected"),
    [
        ("champion set", BODY, ChampionMove("imdb-sentiment", "3")),
        ("another alias", alias_body(alias="challenger"), None),
        ("another model", alias_body(name=CANARY), None),
        (
            "another event",
            _body({"entity": "model_version", "action": "created", "data": {}}),
            None,
        ),
        ("not JSON", CANARY.encode(), BadDelivery),
        ("a list", _body([CANARY]), BadDelivery),
        ("no data", _body({"entity": "model_version_alias", "action": "created"}), BadDelivery),
        ("no entity", _body({"data": {"name": CANARY}}), BadDelivery),
        ("a version not a number", alias_body(version=CANARY), BadDelivery),
        (
            "a version a number",
            _body(
                {
                    "entity": "model_version_alias",
                    "action": "created",
                    "data": {"name": "imdb-sentiment", "alias": "champion", "version": 3},
                }
            ),
            BadDelivery,
        ),
        ("a name too long", alias_body(name=CANARY * 30), BadDelivery),
        ("nested too deep", b"[" * 100_000, BadDelivery),
    ],
)
def test_only_a_champion_move_of_our_models_is_acted_on(case, body, expected) -> None:
    if expected is BadDelivery:
        with pytest.raises(BadDelivery) as raised:
            champion_move(body, MODELS)
        assert CANARY not in str(raised.value) and len(str(raised.value)) < 120
    else:
        assert champion_move(body, MODELS) == expected, case


PROMOTED = {"promotion.decision": "promoted"}


@pytest.mark.parametrize(
    ("tags", "previous_alias", "known", "expected"),
    [
        (PROMOTED, "2", "2", "gate"),  # the gate promoted it over the champion on record
        (PROMOTED, None, None, "gate"),  # the gate's first champion
        (PROMOTED, "1", "2", "hand"),  # promoted once, long ago; set back by hand
        ({}, "2", "2", "hand"),  # never promoted
        ({"promotion.decision": "rejected"}, "2", "2", "hand"),  # the gate said no
        ({"promotion.reason": "rollback from v3"}, None, "3", "rollback"),
        ({"promotion.reason": "rollback from v3"}, None, "4", "hand"),  # an old rollback
        ({"promotion.decision": "reverted"}, "2", "2", "hand"),  # the guard said no before
    ],
)
def test_who_moved_the_champion(tags, previous_alias, known, expected) -> None:
    assert placed_by(tags, previous_alias, known) == expected


def _evidence(challenger_only: int, champion_only: int, inputs: int = 500) -> Evidence:
    both = inputs // 2
    return Evidence(inputs, both, challenger_only, champion_only)


@pytest.mark.parametrize(
    ("problem", "evidence", "previous", "stands", "says"),
    [
        (
            "not monitored: it has no reference profile",
            _evidence(90, 5),
            "1",
            False,
            "not monitored",
        ),
        (None, _evidence(90, 5), "1", True, "better beyond chance"),
        (None, _evidence(12, 10), "1", False, "not better beyond chance"),
        (None, _evidence(5, 90), "1", False, "not more than the margin"),
        (None, None, None, True, "no champion on record"),
    ],
)
def test_whether_a_champion_set_by_hand_stands(problem, evidence, previous, stands, says):
    assert verdict(problem, evidence, previous, 0.0, 0.05)[0] is stands
    assert says in verdict(problem, evidence, previous, 0.0, 0.05)[1]


@pytest.mark.parametrize(
    ("url", "secret", "fragments"),
    [
        ("ftp://x", SECRET, ["--guard-champion", "http://HOST:PORT/mlflow-webhook"]),
        ("http://127.0.0.1/mlflow-webhook", SECRET, ["http://HOST:PORT/mlflow-webhook"]),
        ("http://127.0.0.1:5055/", SECRET, ["http://HOST:PORT/mlflow-webhook"]),
        ("http://127.0.0.1:5055/mlflow-webhook", "", ["VARIANTS_WEBHOOK_SECRET", "openssl"]),
        ("http://127.0.0.1:5055/mlflow-webhook", "short", ["at least 16 characters"]),
    ],
)
def test_a_guard_mistake_is_one_line_before_any_library(
    url: str, secret: str, fragments: list[str], tmp_path: Path, heavy_stubs: Path
) -> None:
    done = variants("schedule", "--guard-champion", url, cwd=tmp_path, stubs=heavy_stubs,
                    VARIANTS_WEBHOOK_SECRET=secret)  # fmt: skip
    assert_short_error(done, 2, *fragments)
    assert secret not in done.text or not secret


def _receive(app: GuardReceiver, requests: list[dict]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://guard") as http:
            return [await http.request(**request) for request in requests]

    return asyncio.run(run())


def test_the_receiver_acts_on_signed_champion_moves_and_refuses_the_rest_without_an_echo(
    caplog,
) -> None:
    moves: list[ChampionMove] = []
    app = GuardReceiver(SECRET, MODELS, moves.append, clock=time.time)
    now = int(time.time())
    good = signed(BODY, stamp=now)
    other = alias_body(alias="challenger")
    big = b'{"data": "' + CANARY.encode() * (MAX_BODY_BYTES // len(CANARY)) + b'"}'
    tampered = alias_body(name=CANARY)
    with caplog.at_level(logging.INFO, logger="keras_variants.guard"):
        answers = _receive(app, [
            {"method": "POST", "url": PATH, "content": BODY, "headers": good},
            {"method": "POST", "url": PATH, "content": other, "headers": signed(other, stamp=now)},
            {"method": "POST", "url": PATH, "content": tampered, "headers": good},
            {"method": "POST", "url": PATH, "content": CANARY.encode(),
             "headers": signed(CANARY.encode(), stamp=now)},
            {"method": "POST", "url": PATH, "content": big, "headers": signed(big, stamp=now)},
            {"method": "GET", "url": PATH},
            {"method": "POST", "url": f"/{CANARY}", "content": BODY, "headers": good},
        ])  # fmt: skip
    assert [a.status_code for a in answers] == [202, 200, 401, 400, 413, 405, 404]
    assert moves == [ChampionMove("imdb-sentiment", "3")]
    for answer in answers[2:]:
        assert CANARY not in answer.text and len(answer.content) < 300
        assert set(answer.json()) == {"error_code", "message"}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(answers) and not any(CANARY in line for line in lines)


# The review, on a real store with real served models.


class Store:
    """A new store with ``imdb-sentiment``: :meth:`register` adds a served model, untrained
    or trained a little, as a new version (with its run and files' hashes; with its
    reference profile unless ``profiled`` is False)."""

    def __init__(self, root: Path, data_dir: Path, tracking_uri: str | None = None) -> None:
        from keras_variants.config.pipeline import build_config
        from keras_variants.data.datasets import load_dataset
        from keras_variants.tracking.store import client_for

        self.root, self.data_dir = root, data_dir
        self.config = build_config(profile="smoke", data_dir=data_dir, workdir=root,
                                   tracking_uri=tracking_uri)  # fmt: skip
        self.client: MlflowClient = client_for(self.config)
        self.client.create_registered_model("imdb-sentiment")
        self.experiment = self.client.create_experiment("imdb")
        self.data = load_dataset("imdb", data_dir)

    def register(self, seed: int, trained: bool = False, profiled: bool = True) -> str:
        from keras_variants.config.pipeline import PROFILES
        from keras_variants.config.variants import VARIANTS
        from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE, make_splits
        from keras_variants.model.builders import build_model
        from keras_variants.model.training import encoded_batches
        from keras_variants.registry.versions import files_record
        from keras_variants.serving import saving

        variant = VARIANTS["imdb_dense"]
        model = build_model(variant, seed=seed)
        if trained:
            train = make_splits(self.data, PROFILES["smoke"], 0).train
            model.fit(encoded_batches(train, variant, 32, shuffle_seed=0), epochs=4, verbose=0)
        folder = self.root / f"model-{seed}"
        saving.save_model(folder, variant, model, "A fine film.",
                          self.data_dir / IMDB_WORD_INDEX_FILE, saving.requirements())  # fmt: skip
        run = self.client.create_run(self.experiment, tags={"variant": "imdb_dense"})
        source = folder.as_uri()
        tags = {"variant": "imdb_dense"} | files_record(self.client, source)
        version = str(self.client.create_model_version(
            "imdb-sentiment", source, run.info.run_id, tags=tags).version)  # fmt: skip
        if profiled:
            self.profile(version)
        return version

    def profile(self, version: str) -> None:
        """Its reference profile, as the gate builds one at registration."""
        from keras_variants.data.datasets import split_rows
        from keras_variants.lanes.call import call_here
        from keras_variants.registry.reference_profile import build_profile
        from keras_variants.registry.served_accuracy import ServedAccuracy, gate_inputs

        rows = split_rows(self.data, self.config.profile, self.config.seed)["test"]
        scorer = ServedAccuracy(gate_inputs(self.data, rows))
        build_profile(self.client, "imdb-sentiment", version, scorer, self.config.seed,
                      call_here)  # fmt: skip

    def alias(self, alias: str = "champion") -> str | None:
        from keras_variants.registry.versions import alias_version

        return alias_version(self.client, "imdb-sentiment", alias)

    def tags(self, version: str) -> dict[str, str]:
        return self.client.get_model_version("imdb-sentiment", version).tags


@pytest.fixture
@tier("slow")  # trains and scores real models
def guard_store(tmp_path: Path, data_slices: Path) -> Store:
    return Store(tmp_path, data_slices)


def test_a_champion_set_by_hand_is_reverted_unless_it_stands_and_the_gates_moves_are_taken(
    guard_store: Store,
) -> None:
    """v1 (untrained) is the gate's first champion. Set by hand: v2 (untrained, no better)
    is reverted; v3 (untrained, no reference profile) is reverted; v4 (trained a little) is
    confirmed, v1 becoming 'previous'; v5 with a changed file is reverted to v4. The gate
    promoting v6 (trained) over v4 is taken as it is."""
    from keras_variants.registry import gate
    from keras_variants.registry.guard import KNOWN_TAG, adopt, review

    store = guard_store
    client, name = store.client, "imdb-sentiment"

    def set_by_hand(version: str):
        client.set_registered_model_alias(name, "champion", version)
        return review(client, store.config, store.data, name, version)

    first = store.register(seed=1, profiled=False)
    assert gate.gate(client, store.config, store.data, version=first).promoted
    assert adopt(client, name) == first
    worse, unmonitored = store.register(seed=2), store.register(seed=3, profiled=False)
    better = store.register(seed=4, trained=True)
    tampered = store.register(seed=5)

    decided = set_by_hand(worse)
    assert (decided.outcome, store.alias()) == ("reverted", first), decided
    assert "McNemar exact p" in decided.reason  # the gate's paired test said no
    assert store.tags(worse)["promotion.decision"] == "reverted"
    assert f"v{first} restored as champion" in store.tags(worse)["promotion.reason"]

    decided = set_by_hand(unmonitored)
    assert (decided.outcome, store.alias()) == ("reverted", first)
    assert "not monitored" in decided.reason

    decided = set_by_hand(better)
    assert (decided.outcome, store.alias(), store.alias("previous")) == (
        "confirmed", better, first)  # fmt: skip
    assert decided.p_value is not None and decided.p_value < 0.05
    assert client.get_registered_model(name).tags[KNOWN_TAG] == better
    tags = store.tags(better)
    assert tags["promotion.decision"] == "promoted by hand" and tags["promotion.by"] == "hand"
    assert "better beyond chance" in tags["promotion.reason"]
    description = client.get_model_version(name, better).description
    assert "promoted by hand: checked as the gate checks a challenger: right on" in description

    code = store.root / f"model-{5}" / "served_model.py"
    code.write_text(code.read_text() + "\n# changed\n")
    decided = set_by_hand(tampered)
    assert (decided.outcome, store.alias()) == ("reverted", better)
    assert "files are not those registered" in decided.reason

    # What the guard did itself is the champion on record: its own move is nothing new.
    assert review(client, store.config, store.data, name, better).outcome == "unchanged"
    # The gate's promotion, as the webhook of its alias set would bring it.
    sixth = store.register(seed=6, trained=True)
    gated = gate.gate(client, store.config, store.data, version=sixth, significance=1.0,
                      margin=-1.0)  # fmt: skip
    assert gated.promoted, gated
    decided = review(client, store.config, store.data, name, sixth)
    assert (decided.outcome, store.alias()) == ("adopted", sixth), decided
    # A move reviewed after the alias moved on is left to that move's own review.
    assert review(client, store.config, store.data, name, better).outcome == "stale"
