"""The guarded champion: a ``champion`` alias set by hand (in the MLflow UI, or through its
REST API) gets the gate's evidence before it stands.

The guard keeps the champion it has checked on the registered model (tag
``guard.champion``). When ``champion`` moves, :func:`review` takes the promotion lock (so a
gate switching aliases has finished), and decides who moved it (:func:`placed_by`): the
gate and ``variants rollback`` leave their marks on the version, and their moves are taken
as they are. A move by hand is checked as the gate checks a challenger, against the
champion on record: the version's files are those registered, its reference profile is
there (so its drift can be checked), and it is better than the champion beyond chance on
the served test inputs (the paired test of :mod:`~keras_variants.registry.promotion_rule`).
:func:`verdict` says what that evidence means. Confirmed, the version stays champion, the
one it replaced becomes ``previous`` and its model card says it was promoted by hand, with
the evidence; refused, the champion on record is champion again and the version's card
says why.

MLflow and the registry's own modules; the models are scored through ``call``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.data.datasets import Dataset, split_rows
from keras_variants.errors import VariantsError
from keras_variants.lanes.call import Call, call_here
from keras_variants.registry.loading import verified_path
from keras_variants.registry.model_card_store import try_write_card
from keras_variants.registry.promotion_rule import Evidence, decide, paired, reason
from keras_variants.registry.reference_profile import unmonitored
from keras_variants.registry.served_accuracy import ServedAccuracy, gate_inputs, score_served
from keras_variants.registry.versions import alias_version
from keras_variants.tracking.locks import promotion_lock

KNOWN_TAG = "guard.champion"  # on the registered model: the champion the guard has checked
CHAMPION = "champion"
CONFIRMED, REVERTED = "promoted by hand", "reverted"  # promotion.decision on the version
CHECKED = "checked as the gate checks a challenger"


@dataclass(frozen=True)
class Guarded:
    """What the guard did about ``champion`` naming ``version``: ``outcome`` is
    ``confirmed`` or ``reverted`` (a move by hand, checked), ``adopted`` (a move by the gate
    or a rollback, recorded), ``unchanged`` (the champion on record) or ``stale`` (the
    alias has moved on since; that move is reviewed by itself)."""

    model: str
    version: str
    outcome: str
    reason: str
    previous: str | None = None  # the champion on record before
    champion: str | None = None  # the champion after the review
    p_value: float | None = None

    def sentence(self) -> str:
        return f"{self.model} 'champion' v{self.version}: {self.outcome}: {self.reason}"


def placed_by(tags: dict[str, str], previous_alias: str | None, known: str | None) -> str:
    """Who made this version champion, from its tags and the aliases: ``gate`` (the gate
    promoted it over the champion on record: its decision says promoted and ``previous``
    names that champion), ``rollback`` (``variants rollback`` from the champion on record)
    or ``hand`` (anything else, a person in the MLflow UI included)."""
    if tags.get("promotion.decision") == "promoted" and previous_alias == known:
        return "gate"
    if known is not None and tags.get("promotion.reason") == f"rollback from v{known}":
        return "rollback"
    return "hand"


def verdict(
    problem: str | None,
    evidence: Evidence | None,
    previous: str | None,
    margin: float,
    significance: float,
) -> tuple[bool, str]:
    """Whether a version set champion by hand stands, and why: not with a ``problem``
    (files changed, no reference profile, does not load); else by the gate's rule against
    the champion on record (``evidence``; None when there is none to compare with)."""
    if problem is not None:
        return False, problem
    if evidence is None or previous is None:
        return True, "no champion on record to compare with; its files and profile are in order"
    return decide(evidence, margin, significance, False), reason(
        evidence, previous, margin, significance, False
    )


def known_champion(client: MlflowClient, name: str) -> str | None:
    return client.get_registered_model(name).tags.get(KNOWN_TAG)


def adopt(client: MlflowClient, name: str) -> str | None:
    """Where no champion is on record yet, record the one there is (the guard starts by
    trusting it); the champion on record afterwards."""
    known = known_champion(client, name)
    if known is None:
        known = alias_version(client, name, CHAMPION)
        if known is not None:
            client.set_registered_model_tag(name, KNOWN_TAG, known)
    return known


def review(
    client: MlflowClient,
    config: PipelineConfig,
    data: Dataset,
    name: str,
    version: str,
    call: Call = call_here,
) -> Guarded:
    """Check that ``champion`` naming ``version`` stands (see the module's docstring), and
    confirm it or restore the champion on record. Scores through ``call``; holds the
    promotion lock throughout."""
    version = str(version)
    with promotion_lock(config.tracking_uri, name):
        champion = alias_version(client, name, CHAMPION)
        known = known_champion(client, name)
        if champion != version:
            why = f"'champion' is {_v(champion)} now; that move is reviewed by itself"
            return Guarded(name, version, "stale", why, known, champion)
        if version == known:
            return Guarded(name, version, "unchanged", "the champion on record", known, known)
        tags = client.get_model_version(name, version).tags
        mover = placed_by(tags, alias_version(client, name, "previous"), known)
        if mover != "hand":
            client.set_registered_model_tag(name, KNOWN_TAG, version)
            why = f"made champion by the {mover}; recorded"
            return Guarded(name, version, "adopted", why, known, version)
        problem, evidence = _evidence(client, config, data, name, version, known, call)
        stands, why = verdict(
            problem, evidence, known, config.promotion_margin, config.promotion_significance
        )
        p_value = evidence.p_value if evidence is not None else None
        if stands:
            if known is not None:
                client.set_registered_model_alias(name, "previous", known)
            client.set_registered_model_tag(name, KNOWN_TAG, version)
            guarded = Guarded(name, version, "confirmed", why, known, version, p_value)
            _record(client, guarded, CONFIRMED, f"{CHECKED}: {why}", evidence)
        else:
            if known is None:  # nothing to restore: an unchecked version is no champion
                client.delete_registered_model_alias(name, CHAMPION)
                restored = "no champion on record to restore, so 'champion' was removed"
            else:
                client.set_registered_model_alias(name, CHAMPION, known)
                restored = f"v{known} restored as champion"
            why = f"{restored}: {why}"
            guarded = Guarded(name, version, "reverted", why, known, known, p_value)
            _record(client, guarded, REVERTED, f"set champion by hand; {why}", evidence)
    try_write_card(client, name, version)  # the card states the decision and its evidence
    return guarded


def _evidence(
    client: MlflowClient,
    config: PipelineConfig,
    data: Dataset,
    name: str,
    version: str,
    known: str | None,
    call: Call,
) -> tuple[str | None, Evidence | None]:
    """What the gate would check of a challenger: the version's files, its reference
    profile, and (with a champion on record) its answers against the champion's on the
    served test inputs. A problem in words, or the evidence."""
    try:
        folder = verified_path(client, name, version)
    except VariantsError as exc:
        return f"its files are not those registered ({exc})", None
    why = unmonitored(client, name, version)
    if why is not None:
        return f"not monitored: {why}", None
    if known is None:
        return None, None
    test_rows = split_rows(data, config.profile, config.seed)["test"]
    scorer = ServedAccuracy(gate_inputs(data, test_rows))
    try:
        correct = call(score_served, folder, scorer)
    except Exception as exc:
        return f"does not load or predict ({type(exc).__name__}: {exc})", None
    champion_correct = call(score_served, verified_path(client, name, known), scorer)
    return None, paired(correct, champion_correct)


def _record(
    client: MlflowClient, guarded: Guarded, decision: str, why: str, evidence: Evidence | None
) -> None:
    """The guard's decision on the version, as the gate records its own (the model card
    reads ``promotion.decision`` and ``promotion.reason``)."""
    tags = {
        "promotion.decision": decision,
        "promotion.reason": why,
        "promotion.by": "hand",
        "promotion.at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if evidence is not None:
        tags["promotion.test_accuracy"] = f"{evidence.challenger_accuracy:.6f}"
        tags["promotion.p_value"] = f"{evidence.p_value:.4g}"
    for key, value in tags.items():
        client.set_model_version_tag(guarded.model, guarded.version, key, value)


def _v(version: str | None) -> str:
    return "unset" if version is None else f"v{version}"
