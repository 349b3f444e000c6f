"""Gated promotion in the MLflow model registry, with aliases (no stages).

A run's best variant per data set (by final validation accuracy) is registered as a new
version with the alias ``challenger``. It becomes ``champion`` only if it loads back and
answers through the served path, has its reference profile (so that its drift can be
checked: :mod:`keras_variants.registry.reference_profile`), and is better than the current
champion on the same test inputs beyond chance and by more than ``margin`` (the rule, a
paired test on per-input correctness, is :mod:`keras_variants.registry.promotion_rule`). The
replaced champion keeps the alias ``previous``. Every decision is written onto the version
as tags. Promotions of one model take turns, across machines too
(:func:`keras_variants.tracking.locks.promotion_lock`).

The gate scores what users call: the registered pyfunc model, fed review texts or PNG
digit images, so what is promoted is exactly what is served.
"""

from __future__ import annotations

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
from keras_variants.registry.gate_memo import remember, remembered
from keras_variants.registry.loading import verified_path
from keras_variants.registry.model_card_store import try_write_card
from keras_variants.registry.promotion_rule import decide, paired, reason
from keras_variants.registry.reference_profile import (
    NEVER_UNMONITORED,
    build_profile,
    unmonitored,
)
from keras_variants.registry.served_accuracy import ServedAccuracy, gate_inputs, score_served
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
    client: MlflowClient, name: str, version: str, scorer: Scorer, remember_it: bool, call: Call
) -> np.ndarray:
    """Whether the version is right on each test input, computed through ``call`` from its
    files once they are checked to be the files registered; remembered on the version
    (:mod:`~keras_variants.registry.gate_memo`: sealed to those files and the scorer), since
    a version and the test inputs are both immutable, so a champion is scored once."""
    folder = verified_path(client, name, version)
    key = getattr(scorer, "key", None)
    if key is not None and (found := remembered(client, name, version, key)) is not None:
        return found
    correct = np.asarray(call(score_served, folder, scorer), bool)
    if key is not None and remember_it:
        remember(client, name, version, key, correct)
    return correct


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
    (in a lane, for a pipeline run); switches aliases if it passes. A version without a
    reference profile gets one first (kept unless ``dry_run``); one that cannot get one is
    not promoted. One promotion of a registered model at a time, across processes and
    machines (:func:`~keras_variants.tracking.locks.promotion_lock`).
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
        profiled = None
        if unmonitored(client, name, version) is not None:
            try:
                profiled = build_profile(
                    client, name, version, scorer, config.seed, call, store=not dry_run
                )
            except Exception as exc:
                why = f"building its reference profile failed ({type(exc).__name__}: {exc})"
                return _record(client, _not_monitored(name, version, why), dry_run)
        return promote(
            client, name, version, scorer, margin, significance, dry_run, force, call, profiled
        )


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
    profiled: np.ndarray | None = None,
) -> Decision:
    """Score ``name`` version ``version`` and the champion (through ``call``), apply
    :func:`~keras_variants.registry.promotion_rule.decide`, and switch aliases if it says
    so; ``profiled``: the version's answers, from building its reference profile just now.
    A version without a readable reference profile is never promoted, even with ``force``.
    Callers hold the promotion lock (see :func:`gate`)."""
    version = str(version)  # MLflow hands out versions as int or str
    try:
        if profiled is None:
            correct = _score(client, name, version, scorer, not dry_run, call)
        else:
            correct = profiled
    except Exception as exc:
        decision = Decision(name, version, False, f"does not load or predict ({exc})")
        return _record(client, decision, dry_run)
    why = unmonitored(client, name, version) if profiled is None else None
    if why is not None:
        return _record(client, _not_monitored(name, version, why), dry_run)
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


def _not_monitored(name: str, version: str, why: str) -> Decision:
    return Decision(name, version, False, f"not monitored: {why}; {NEVER_UNMONITORED}")


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
    """Make ``previous`` the champion again; the demoted version is tagged as rolled back.
    A ``previous`` that is not monitored is refused."""
    with promotion_lock(tracking_uri, name):
        previous = alias_version(client, name, "previous")
        champion = alias_version(client, name, "champion")
        if previous is None:
            raise VariantsError(f"{name} has no 'previous' version to roll back to")
        why = unmonitored(client, name, previous)
        if why is not None:
            raise VariantsError(
                f"{name} v{previous} ('previous') is not monitored: {why}; {NEVER_UNMONITORED}. "
                f"'variants promote --model {name} --version {previous}' builds its profile "
                "and runs the gate"
            )
        client.set_registered_model_alias(name, "champion", previous)
        client.delete_registered_model_alias(name, "previous")
        if champion:
            client.set_model_version_tag(name, champion, "promotion.decision", "rolled back")
        decision = Decision(name, previous, True, f"rollback from v{champion}", None, champion)
        client.set_model_version_tag(name, previous, "promotion.reason", decision.reason)
    for version in filter(None, (previous, champion)):  # each card states its new decision
        try_write_card(client, name, version)
    return decision
