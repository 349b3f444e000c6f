"""The model card in MLflow: :func:`write_card` gathers a version's facts from the registry
and its run, and writes its card (:mod:`.model_card`) as the version's description
(rendered by the MLflow UI) and as ``model_card.md`` / ``model_card.json`` artifacts of the
version's run. It is written at registration and again when the gate decides.
"""

from __future__ import annotations

import json
import logging

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from keras_variants.monitoring.stored import load_measurement
from keras_variants.registry.model_card import (
    TEST_METRICS,
    TRAINING_PARAMS,
    CardFacts,
    card_json,
    card_markdown,
)
from keras_variants.tracking.records import load_uncertainty
from keras_variants.tracking.store import scoring_experiment
from keras_variants.tracking.ui_links import experiment_runs_page, mlflow_ui_for

log = logging.getLogger(__name__)

CARD_FILE = "model_card.md"
CARD_JSON = "model_card.json"
DESCRIPTION_LIMIT = 5_000  # characters MLflow's SQL stores keep of a description


def gather(client: MlflowClient, name: str, version: str) -> CardFacts:
    """The facts about version ``version`` of ``name`` from the registry and its run."""
    registered = client.get_model_version(name, version)
    run = client.get_run(registered.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    label = tags.get("label", tags.get("variant", ""))
    uncertainty = load_uncertainty(client, run) or {}
    across = {}
    parent = tags.get(MLFLOW_PARENT_RUN_ID)
    if parent:
        summary = client.get_run(parent).data.metrics
        prefix = f"{label}/test/accuracy/"
        across = {k.removeprefix(prefix): v for k, v in summary.items() if k.startswith(prefix)}
    return CardFacts(
        model=name,
        version=str(version),
        variant=tags.get("variant", ""),
        label=label,
        dataset=tags.get("dataset", ""),
        run_id=run.info.run_id,
        architecture=params.get("architecture", "?"),
        parameter_count=params.get("parameter_count", "?"),
        training={k: params[k] for k in TRAINING_PARAMS if k in params},
        data_sha256={
            k.removeprefix("data.").removesuffix(".sha256"): v
            for k, v in tags.items()
            if k.startswith("data.") and k.endswith(".sha256")
        },
        test={k: v for k, v in metrics.items() if k in TEST_METRICS},
        across_seeds=across,
        far_from_data=uncertainty.get("far_from_data"),
        mc_samples=uncertainty.get("mc_samples"),
        decision=registered.tags.get("promotion.decision"),
        reason=registered.tags.get("promotion.reason"),
        tracking_uri=client.tracking_uri,
        monitoring=load_measurement(client, registered),
        scoring_page=_scoring_page(client, name),
    )


def _scoring_page(client: MlflowClient, name: str) -> str | None:
    experiment = client.get_experiment_by_name(scoring_experiment(name))
    if experiment is None:
        return None
    return experiment_runs_page(mlflow_ui_for(client.tracking_uri), experiment.experiment_id)


def write_card(client: MlflowClient, name: str, version: str) -> CardFacts:
    """Write the card of ``name`` version ``version``: its description in the registry
    and ``model_card.md`` / ``model_card.json`` on its run."""
    facts = gather(client, name, version)
    markdown = card_markdown(facts)
    description = markdown
    if len(description) > DESCRIPTION_LIMIT:
        more = f"\n\n(cut here: the whole card is {CARD_FILE} in run {facts.run_id})\n"
        description = description[: DESCRIPTION_LIMIT - len(more)] + more
    client.log_text(facts.run_id, markdown, CARD_FILE)
    client.log_text(facts.run_id, json.dumps(card_json(facts), indent=2), CARD_JSON)
    client.update_model_version(name, version, description=description)
    return facts


_warned: list[str] = []  # a card that cannot be written is said once per process


def try_write_card(client: MlflowClient, name: str, version: str) -> CardFacts | None:
    """:func:`write_card`, never failing its caller (a registration, the gate): a card
    that cannot be written is logged as a warning (once) and None is returned."""
    try:
        return write_card(client, name, version)
    except Exception as exc:  # a missing card must not stop a registration
        message = f"model card of {name} v{version} not written: {type(exc).__name__}: {exc}"
        if not _warned:
            _warned.append(message)
            log.warning(message)
        else:
            log.debug(message)
        return None
