"""Seeds until decided (``--seeds auto``): after each batch of seeds, which trials to add so
that the lecture's claims still undecided get more seeds."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from keras_variants.config.pipeline import PipelineConfig
from keras_variants.config.trials import Trial
from keras_variants.studies.claims import LECTURE_CLAIMS, Decided
from keras_variants.studies.sequential import (
    decide_sequentially,
    look_sizes,
    needed_labels,
    next_seeds,
)
from tasks.train import VariantOutcome


def by_seed(outcomes: Sequence[VariantOutcome]) -> dict[str, dict[int, dict[str, float]]]:
    """label -> seed -> the measures a study compares."""
    table: dict[str, dict[int, dict[str, float]]] = {}
    for o in outcomes:
        table.setdefault(o.label, {})[o.seed] = o.measures
    return table


def next_look(
    config: PipelineConfig, outcomes: Sequence[VariantOutcome]
) -> tuple[list[Decided], list[Trial]]:
    """The claims decided so far (at their first deciding look), and the trials of the next
    look: the next batch of seeds for the variants of the undecided claims; none once all
    are decided, at the cap, or without ``config.seed_plan``."""
    plan = config.seed_plan
    if plan is None:
        return [], []
    sizes = look_sizes(plan.first, plan.cap)
    table = by_seed(outcomes)
    decided = [
        decide_sequentially(claim, table, sizes)
        for claim in LECTURE_CLAIMS
        if claim.subject in table and claim.baseline in table
    ]
    labels = needed_labels(decided)
    trained = 1 + max((o.seed for o in outcomes if o.label in labels), default=-1)
    seeds = next_seeds(sizes, trained) if labels else None
    if seeds is None:
        return decided, []
    return decided, [t for t in config.trials(seeds) if t.label in labels]


@task(name="next-look", cache_policy=NO_CACHE)
def more_seeds(config: PipelineConfig, outcomes: list[VariantOutcome]) -> list[Trial]:
    """The trials to add before the next look (:func:`next_look`), said in the log."""
    decided, trials = next_look(config, outcomes)
    if config.seed_plan is None:
        return trials
    logger = get_run_logger()
    undecided = [d.claim.number for d in decided if d.verdict == "inconclusive"]
    if trials:
        seeds = sorted({t.seed for t in trials})
        labels = sorted({t.label for t in trials})
        logger.info(
            "claims %s undecided: adding seeds %d-%d of %s",
            ", ".join(undecided), seeds[0], seeds[-1], ", ".join(labels),
        )  # fmt: skip
    elif undecided:
        logger.warning(
            "claims %s still undecided at the cap of %d seeds",
            ", ".join(undecided), config.seed_plan.cap,
        )  # fmt: skip
    else:
        logger.info("every claim decided: %s", "; ".join(
            f"{d.claim.number} {d.verdict} ({d.n} seeds)" for d in decided))  # fmt: skip
    return trials
