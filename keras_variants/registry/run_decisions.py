"""Each pipeline run's own registry decisions, recorded on its parent runs: what the
terminal printed at the end of the run is what the run's report lists, also when the report
is rebuilt later and the registry has moved on.

MLflow only. The decisions themselves are made in :mod:`keras_variants.registry.gate`.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow.tracking import MlflowClient

from keras_variants.registry.versions import decisions_for

DECISION_TAG = "registry.decision"  # on a data set's parent run: Decision.sentence()


def record_decision(client: MlflowClient, parent_run_id: str, sentence: str) -> None:
    """Write the gate's decision for the data set of ``parent_run_id`` onto that run."""
    client.set_tag(parent_run_id, DECISION_TAG, sentence)


def run_decisions(
    client: MlflowClient, parent_run_ids: Iterable[str], variant_run_ids: set[str]
) -> list[str]:
    """The decisions recorded on a pipeline run's parent runs, in their order. For a run
    recorded before this tag existed, the decisions recorded on the versions registered
    from its variant runs (``variant_run_ids``)."""
    recorded = [client.get_run(run_id).data.tags.get(DECISION_TAG) for run_id in parent_run_ids]
    if any(recorded):
        return [sentence for sentence in recorded if sentence]
    return decisions_for(client, variant_run_ids)
