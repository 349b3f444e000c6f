"""Gated promotion in the MLflow model registry, with aliases (no stages).

A run's best variant per data set (by final validation accuracy) is registered as a new
version with the alias ``challenger``. It becomes ``champion`` only if it loads back and
answers through the served path and is better than the current champion on the same test
inputs beyond chance and by more than ``margin`` (the rule, a paired test on per-input
correctness, is :mod:`keras_variants.registry.promotion_rule`). The replaced champion keeps
the alias ``previous``. Every decision is written onto the version as tags.

The gate scores what users call: the registered pyfunc model, fed review texts or PNG
digit images, so what is promoted is exactly what is served.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.data.datasets import Dataset, split_rows
from keras_variants.errors import VariantsError
from keras_variants.lanes.call import Call, call_here
from keras_variants.registry.loading import verified_path
from keras_variants.registry.model_card import try_write_card
from keras_variants.registry.promotion_rule import decide, paired, reason
from keras_variants.registry.served_accuracy import (
    ServedAccuracy,
    gate_inputs,
    score_and_profile,
    score_served,
)
from keras_variants.registry.versions import (
    REGISTERED_MODELS,
    alias_version,
    logged_model_id,
    register_challenger,
    version_of_model,
)
from keras_variants.tracking.locks import promotion_lock
from keras_variants.tracking.records import VariantRecord

SELECTION_METRIC = "val/accuracy"  # of the final epoch, i.e. of the model that was logged

# Scores a loaded pyfunc model on the gate's test inputs: whether it is right on each (a
# bool per input). A scorer with a ``key`` (like ServedAccuracy) lets the gate remember
# the answers per version.
Scorer = Callable[[mlflow.pyfunc.PyFuncModel], np.ndarray]


@dataclass(frozen=True)
class Decision:
    model: str
    version: str
    promoted: bool
    reason: str
    challenger_accuracy: float | None = None
    champion_version: str | None = None
    champion_accuracy: float | None = None
    p_value: float | None = None

    def sentence(self) -> str:
        verdict = "promoted to champion" if self.promoted else "not promoted"
        return f"{self.model} v{self.version}: {verdict}: {self.reason}"


def select_challenger(records: list[VariantRecord]) -> VariantRecord:
    """The run with the best validation accuracy; when seeds vary, the variant (or sweep
    point) with the best mean validation accuracy across its seeds, then its best seed."""
    if not records:
        raise VariantsError("no finished variant run to choose a challenger from")

    def accuracy(record: VariantRecord) -> float:
        return record.metrics.get(SELECTION_METRIC, float("-inf"))

    by_label: dict[str, list[VariantRecord]] = {}
    for record in records:
        by_label.setdefault(record.tags.get("label", record.variant), []).append(record)
    best = max(by_label.values(), key=lambda runs: float(np.mean([accuracy(r) for r in runs])))
    return max(best, key=accuracy)


def _score(
    client: MlflowClient, name: str, version: str, scorer: Scorer, remember: bool, call: Call
) -> np.ndarray:
    """Whether the version is right on each test input, computed through ``call``;
    remembered on the version as packed bits (a tag per input digest), since a version and
    the test inputs are both immutable, so a champion is scored once."""
    tags = client.get_model_version(name, version).tags
    memo = f"gate.correct.{scorer.key}" if hasattr(scorer, "key") else None
    if memo in tags:
        return unpack_correct(tags[memo])
    correct = np.asarray(call(score_served, verified_path(client, name, version), scorer), bool)
    if memo and remember:
        client.set_model_version_tag(name, version, memo, pack_correct(correct))
    return correct


def pack_correct(correct: np.ndarray) -> str:
    """Per-input correctness as ``"<count>:<base64 of the packed bits>"`` (25,000 test
    reviews take 4,174 characters)."""
    bits = np.packbits(np.asarray(correct, bool))
    return f"{correct.size}:{base64.b64encode(bits.tobytes()).decode()}"


def unpack_correct(packed: str) -> np.ndarray:
    count, bits = packed.split(":", 1)
    return np.unpackbits(np.frombuffer(base64.b64decode(bits), np.uint8), count=int(count))


def _profile(
    client: MlflowClient, name: str, version: str, scorer: ServedAccuracy, seed: int, call: Call
) -> None:
    """Score a newly registered version through the served path once: whether it is right
    on each test input (remembered for the gate) and its reference profile with the
    measurement of its monitors (stored with the version). A version that does not load is
    left to the gate."""
    from keras_variants.monitoring.stored import store_profile

    try:
        correct, profile, measurement = call(
            score_and_profile, verified_path(client, name, version), scorer, seed
        )
    except Exception as exc:  # promote() scores it again and records why it fails
        logging.getLogger(__name__).warning("%s v%s: no reference profile (%s)", name, version, exc)
        return
    store_profile(client, name, version, profile, measurement)
    client.set_model_version_tag(name, version, f"gate.correct.{scorer.key}", pack_correct(correct))


def gate(
    client: MlflowClient,
    config: PipelineConfig,
    data: Dataset,
    *,
    version: str | None = None,
    challenger: VariantRecord | None = None,
    margin: float | None = None,
    significance: float | None = None,
    dry_run: bool = False,
    force: bool = False,
    call: Call = call_here,
) -> Decision:
    """The gate, as both the pipeline and ``variants promote`` run it.

    Registers ``challenger`` first when given, else takes ``version`` (default: the version
    aliased ``challenger``); scores it and the champion through the served path on
    ``data``'s test rows for ``config``'s profile and seed, loading models through ``call``
    (in a lane, for a pipeline run); switches aliases if it passes. One promotion of a
    registered model at a time, across this host's processes.
    """
    name = REGISTERED_MODELS[data.name]
    margin = config.promotion_margin if margin is None else margin
    significance = config.promotion_significance if significance is None else significance
    with promotion_lock(config.tracking_uri, name):
        if challenger is not None:
            same = version_of_model(client, name, logged_model_id(client, challenger))
            if same is not None:  # a reused run: its model is registered already
                return _identical(client, name, same)
            version = register_challenger(client, challenger)
        elif version is None:
            version = alias_version(client, name, "challenger")
            if version is None:
                raise VariantsError(f"{name} has no 'challenger' version; pass --version N")
        test_rows = split_rows(data, config.profile, config.seed)["test"]
        scorer = ServedAccuracy(gate_inputs(data, test_rows))
        if challenger is not None and not dry_run:
            _profile(client, name, version, scorer, config.seed, call)
        return promote(client, name, version, scorer, margin, significance, dry_run, force, call)


def _identical(client: MlflowClient, name: str, version: str) -> Decision:
    """The decision for a challenger whose model is version ``version`` already."""
    if alias_version(client, name, "champion") == version:
        state = "the champion"
    else:
        earlier = client.get_model_version(name, version).tags.get("promotion.reason", "")
        state = f"not the champion: {earlier}" if earlier else "not the champion"
    return Decision(name, version, False, f"identical to v{version} ({state}); nothing registered")


def promote(
    client: MlflowClient,
    name: str,
    version: str,
    scorer: Scorer,
    margin: float = 0.0,
    significance: float = 0.05,
    dry_run: bool = False,
    force: bool = False,
    call: Call = call_here,
) -> Decision:
    """Score ``name`` version ``version`` and the champion (through ``call``), apply
    :func:`~keras_variants.registry.promotion_rule.decide`, and switch aliases if it says
    so. Callers hold the promotion lock (see :func:`gate`)."""
    version = str(version)  # MLflow hands out versions as int or str
    try:
        correct = _score(client, name, version, scorer, not dry_run, call)
    except Exception as exc:
        decision = Decision(name, version, False, f"does not load or predict ({exc})")
        return _record(client, decision, dry_run)
    accuracy = float(correct.mean()) if correct.size else 0.0
    for _ in range(3):  # re-read the champion right before switching: never downgrade
        champion = alias_version(client, name, "champion")
        if champion == version:
            return Decision(name, version, False, "is already the champion", accuracy)
        if champion is None:
            evidence = None
            why = f"first champion (test accuracy {accuracy:.4f})"
        else:
            evidence = paired(correct, _score(client, name, champion, scorer, not dry_run, call))
            forced = force and not decide(evidence, margin, significance, False)
            why = reason(evidence, champion, margin, significance, forced)
        promoted = decide(evidence, margin, significance, force)
        decision = Decision(
            name,
            version,
            promoted,
            why,
            accuracy,
            champion,
            evidence.champion_accuracy if evidence else None,
            evidence.p_value if evidence else None,
        )
        if not promoted:
            return _record(client, decision, dry_run)
        if alias_version(client, name, "champion") != champion:
            continue  # someone promoted meanwhile: evaluate against the new champion
        if not dry_run:
            if champion:
                client.set_registered_model_alias(name, "previous", champion)
            client.set_registered_model_alias(name, "champion", version)
        return _record(client, decision, dry_run)
    raise VariantsError(f"{name}: the champion kept changing during promotion; try again")


def _record(client: MlflowClient, decision: Decision, dry_run: bool) -> Decision:
    if dry_run:
        return decision
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {
        "promotion.decision": "promoted" if decision.promoted else "rejected",
        "promotion.reason": decision.reason,
        "promotion.at": stamp,
    }
    if decision.challenger_accuracy is not None:
        tags["promotion.test_accuracy"] = f"{decision.challenger_accuracy:.6f}"
    if decision.p_value is not None:
        tags["promotion.p_value"] = f"{decision.p_value:.4g}"
    for key, value in tags.items():
        client.set_model_version_tag(decision.model, decision.version, key, value)
    try_write_card(client, decision.model, decision.version)  # the card states the decision
    return decision


def rollback(client: MlflowClient, tracking_uri: str, name: str) -> Decision:
    """Make ``previous`` the champion again; the demoted version is tagged as rolled back."""
    with promotion_lock(tracking_uri, name):
        previous = alias_version(client, name, "previous")
        champion = alias_version(client, name, "champion")
        if previous is None:
            raise VariantsError(f"{name} has no 'previous' version to roll back to")
        client.set_registered_model_alias(name, "champion", previous)
        client.delete_registered_model_alias(name, "previous")
        if champion:
            client.set_model_version_tag(name, champion, "promotion.decision", "rolled back")
        decision = Decision(name, previous, True, f"rollback from v{champion}", None, champion)
        client.set_model_version_tag(name, previous, "promotion.reason", decision.reason)
    for version in filter(None, (previous, champion)):  # each card states its new decision
        try_write_card(client, name, version)
    return decision
