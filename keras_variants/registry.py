"""Gated promotion in the MLflow model registry, with aliases (no stages).

A run's best variant per data set (by final validation accuracy) is registered as a new
version with the alias ``challenger``. It becomes ``champion`` only if it loads back and
predicts, and beats the current champion, re-evaluated now on the same test data, by at
least ``margin``. The replaced champion keeps the alias ``previous``. Every decision is
written onto the version as tags.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from keras_variants.config import VARIANTS, VariantConfig
from keras_variants.datasets import Examples, Ragged
from keras_variants.encoding import encode_inputs
from keras_variants.errors import VariantsError
from keras_variants.runs import VariantRecord

REGISTERED_MODELS = {"mnist": "mnist-classifier", "imdb": "imdb-sentiment"}
SELECTION_METRIC = "val/accuracy"  # of the final epoch, i.e. of the model that was logged

# Scores a loaded pyfunc model of the given variant on the gate's test data: its accuracy.
# A scorer with a ``data_key`` (like AccuracyScorer) lets the gate remember scores per version.
Scorer = Callable[[mlflow.pyfunc.PyFuncModel, VariantConfig], float]


@dataclass(frozen=True)
class Decision:
    model: str
    version: str
    promoted: bool
    reason: str
    challenger_accuracy: float | None = None
    champion_version: str | None = None
    champion_accuracy: float | None = None

    def sentence(self) -> str:
        verdict = "promoted to champion" if self.promoted else "not promoted"
        return f"{self.model} v{self.version}: {verdict}: {self.reason}"


def select_challenger(records: list[VariantRecord]) -> VariantRecord:
    if not records:
        raise VariantsError("no finished variant run to choose a challenger from")
    return max(records, key=lambda r: r.metrics.get(SELECTION_METRIC, float("-inf")))


def register_challenger(client: MlflowClient, record: VariantRecord) -> str:
    """Register ``record``'s model as a new version aliased ``challenger``; its version."""
    name = REGISTERED_MODELS[record.dataset]
    run = client.get_run(record.run_id)
    if not run.outputs or not run.outputs.model_outputs:
        raise VariantsError(f"run {record.run_id} ({record.variant}) has no logged model")
    model_id = run.outputs.model_outputs[0].model_id
    tags = {
        "variant": record.variant,
        "run_id": record.run_id,
        "git_commit": record.tags.get("git_commit", "unknown"),
        "profile": record.tags.get("profile", ""),
        **{k: f"{v:.6g}" for k, v in record.metrics.items() if k.startswith(("val/", "test/"))},
        **{k: v for k, v in record.tags.items() if k.startswith("data.")},
    }
    try:
        client.create_registered_model(name, description=f"Best {record.dataset} variant.")
    except MlflowException:
        client.get_registered_model(name)  # it exists (perhaps created a moment ago): fine
    # The logged model's own location, not "models:/<id>": MLflow resolves that through the
    # process-wide tracking URI, which need not be this client's store.
    source = client.get_logged_model(model_id).artifact_location
    version = client.create_model_version(
        name, source=source, run_id=record.run_id, tags=tags, model_id=model_id
    )
    client.set_registered_model_alias(name, "challenger", version.version)
    return str(version.version)


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _score(client: MlflowClient, name: str, version: str, scorer: Scorer, remember: bool) -> float:
    """The version's test accuracy; remembered on the version (a tag per test-data digest),
    since a version and the test rows are both immutable, so a champion is scored once."""
    tags = client.get_model_version(name, version).tags
    memo = f"gate.test_accuracy.{scorer.data_key}" if hasattr(scorer, "data_key") else None
    if memo in tags:
        return float(tags[memo])
    variant = tags.get("variant", "")
    if variant not in VARIANTS:
        raise VariantsError(f"{name} v{version} has no known 'variant' tag ({variant!r})")
    score = float(scorer(mlflow.pyfunc.load_model(f"models:/{name}/{version}"), VARIANTS[variant]))
    if memo and remember:
        client.set_model_version_tag(name, version, memo, repr(score))
    return score


@dataclass(frozen=True)
class AccuracyScorer:
    """Accuracy on ``examples``, encoded for each model's own variant, batch by batch."""

    examples: Examples
    batch_size: int = 1_000

    def __call__(self, model: mlflow.pyfunc.PyFuncModel, variant: VariantConfig) -> float:
        examples, correct = self.examples, 0.0
        predict = _whole_batches(model)

        def encoded(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            batch = examples.take(rows)
            inputs = encode_inputs(batch.inputs, variant.input_encoding, variant.input_shape[0])
            return inputs, batch.labels

        first, _ = encoded(np.arange(min(8, len(examples))))
        if not np.allclose(model.predict(first), predict(first), atol=1e-6):  # serving path
            raise VariantsError("its pyfunc predictions differ from its Keras model's")
        for start in range(0, len(examples), self.batch_size):
            inputs, labels = encoded(np.arange(start, min(start + self.batch_size, len(examples))))
            correct += accuracy(predict(inputs), labels) * len(labels)
        return correct / max(len(examples), 1)

    @functools.cached_property
    def data_key(self) -> str:
        """A digest of the test rows: a version's score on them is computed once."""
        digest = hashlib.sha256(np.ascontiguousarray(self.examples.labels).tobytes())
        inputs = self.examples.inputs
        for array in (inputs.values, inputs.offsets) if isinstance(inputs, Ragged) else (inputs,):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]


def _whole_batches(model: mlflow.pyfunc.PyFuncModel) -> Callable[[np.ndarray], np.ndarray]:
    """Predictions for a whole batch in one call of the Keras model MLflow loaded (its
    pyfunc ``predict`` goes through ``keras.Model.predict`` in steps of 32 rows: 3x slower)."""
    try:
        keras_model = model.get_raw_model()
    except NotImplementedError:
        return model.predict
    return lambda inputs: np.asarray(keras_model(inputs, training=False))


def decisions_for(client: MlflowClient, run_ids: set[str]) -> list[str]:
    """The recorded registry decisions about versions that came from ``run_ids``."""
    sentences = []
    for name in REGISTERED_MODELS.values():
        for version in client.search_model_versions(f"name = '{name}'"):
            tags = version.tags
            if tags.get("run_id") in run_ids and "promotion.decision" in tags:
                sentences.append(
                    f"{name} v{version.version} ({tags.get('variant')}): "
                    f"{tags['promotion.decision']}: {tags.get('promotion.reason', '')}"
                )
    return sentences


def promote(
    client: MlflowClient,
    name: str,
    version: str,
    scorer: Scorer,
    margin: float = 0.0,
    dry_run: bool = False,
    force: bool = False,
) -> Decision:
    """Run the gate for ``name`` version ``version`` and switch aliases if it passes."""
    version = str(version)  # MLflow hands out versions as int or str
    try:
        challenger_accuracy = _score(client, name, version, scorer, not dry_run)
    except Exception as exc:
        decision = Decision(name, version, False, f"does not load or predict ({exc})")
        return _record(client, decision, dry_run)
    for _ in range(3):  # re-read the champion right before switching: never downgrade
        champion = _alias_version(client, name, "champion")
        if champion == version:
            return Decision(name, version, False, "is already the champion", challenger_accuracy)
        champion_accuracy = (
            _score(client, name, champion, scorer, not dry_run) if champion else None
        )
        beats = champion_accuracy is None or (
            challenger_accuracy > champion_accuracy
            and challenger_accuracy - champion_accuracy >= margin
        )
        if not beats and not force:
            reason = (
                f"test accuracy {challenger_accuracy:.4f} does not beat champion v{champion} "
                f"({champion_accuracy:.4f}) by more than the margin {margin}"
            )
            decision = Decision(
                name, version, False, reason, challenger_accuracy, champion, champion_accuracy
            )
            return _record(client, decision, dry_run)
        if _alias_version(client, name, "champion") != champion:
            continue  # someone promoted meanwhile: evaluate against the new champion
        if champion_accuracy is None:
            reason = f"first champion (test accuracy {challenger_accuracy:.4f})"
        else:
            forced = " (forced)" if not beats else ""
            reason = (
                f"test accuracy {challenger_accuracy:.4f} vs champion v{champion} "
                f"{champion_accuracy:.4f}, margin {margin}{forced}"
            )
        decision = Decision(
            name, version, True, reason, challenger_accuracy, champion, champion_accuracy
        )
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
    for key, value in tags.items():
        client.set_model_version_tag(decision.model, decision.version, key, value)
    return decision


def rollback(client: MlflowClient, name: str) -> Decision:
    """Make ``previous`` the champion again; the demoted version is tagged as rolled back."""
    previous = _alias_version(client, name, "previous")
    champion = _alias_version(client, name, "champion")
    if previous is None:
        raise VariantsError(f"{name} has no 'previous' version to roll back to")
    client.set_registered_model_alias(name, "champion", previous)
    client.delete_registered_model_alias(name, "previous")
    if champion:
        client.set_model_version_tag(name, champion, "promotion.decision", "rolled back")
    decision = Decision(name, previous, True, f"rollback from v{champion}", None, champion)
    client.set_model_version_tag(name, previous, "promotion.reason", decision.reason)
    return decision


def accuracy(predictions: object, labels: np.ndarray) -> float:
    """Share of correct predictions from class probabilities (softmax rows or sigmoid)."""
    scores = np.asarray(predictions, dtype=np.float64)
    if scores.ndim == 2 and scores.shape[1] > 1:
        predicted = scores.argmax(axis=1)
    else:
        predicted = (scores.reshape(-1) > 0.5).astype(np.int64)
    return float((predicted == labels.astype(np.int64)).mean())
