"""Seeds until decided: the looks, the error rate each spends, the first deciding look, and
which trials the next look adds, on hand-made tables."""

from __future__ import annotations

import pytest

from keras_variants.cli.options import study_overrides
from keras_variants.config.pipeline import build_config
from keras_variants.errors import ConfigError
from keras_variants.studies.claims import Claim
from keras_variants.studies.sequential import (
    decide_sequentially,
    look_sizes,
    needed_labels,
    next_seeds,
    spent_alpha,
)
from keras_variants.studies.study import parse_seed_plan
from tasks.study import next_look
from tasks.train import VariantOutcome

LOOKS = [
    ((5, 40), (5, 10, 20, 40)),
    ((5, 30), (5, 10, 20, 30)),  # the last look at the cap
    ((5, 20), (5, 10, 20)),
    ((3, 5), (3, 5)),
    ((5, 5), (5,)),
]


@pytest.mark.parametrize(("plan", "sizes"), LOOKS)
def test_look_sizes(plan: tuple[int, int], sizes: tuple[int, ...]) -> None:
    assert look_sizes(*plan) == sizes


def test_each_look_spends_an_equal_share() -> None:
    assert spent_alpha((5, 10, 20, 40)) == pytest.approx((0.0125,) * 4)
    assert sum(spent_alpha((3, 5))) == pytest.approx(0.05)
    assert spent_alpha((7,)) == (0.05,)


LATER = Claim("1", "B overfits later", "validation_loss_min_epoch", "b", "a", "higher")


def _table(differences: list[float]) -> dict:
    key = LATER.measure
    return {
        "a": {seed: {key: 4.0} for seed in range(len(differences))},
        "b": {seed: {key: 4.0 + d} for seed, d in enumerate(differences)},
    }


SEQUENTIAL = [
    # paired differences in seed order, looks, verdict, seeds it was decided on, look
    ([3.0, 3.1, 2.9, 3.0, 3.0] * 2, (5, 10), "holds", 5, "look 1 of 2"),
    # two looks spend 0.025 each: the first five alone (mean 1, sd 1.58) span zero at
    # 97.5%; all ten (mean 1.5, sd 1.27) lie above it
    ([3, -1, 1, 2, 0, 2, 2, 3, 1, 2], (5, 10), "holds", 10, "look 2 of 2"),
    ([2, -2, 3, -3, 0] * 2, (5, 10), "inconclusive", 10, "look 2 of 2"),
    # only seven seeds trained: the last look with its seeds is look 1
    ([1, -1, 2, -2, 0, 1, -1], (5, 10), "inconclusive", 5, "look 1 of 2"),
    # practically nil (within one epoch, TOST): plain at look 1, or only with ten seeds
    ([0.1, -0.1, 0.05, -0.05, 0.0] * 2, (5, 10), "does not hold", 5, "look 1 of 2"),
    ([1.2, -1.2, 0.6, -0.6, 0.0] * 2, (5, 10), "does not hold", 10, "look 2 of 2"),
]


@pytest.mark.parametrize(("differences", "sizes", "verdict", "n", "look"), SEQUENTIAL)
def test_decided_at_the_first_deciding_look(differences, sizes, verdict, n, look) -> None:
    decided = decide_sequentially(LATER, _table(differences), sizes)
    assert (decided.verdict, decided.n, decided.look) == (verdict, n, look)
    shares = spent_alpha(sizes)
    assert decided.level == pytest.approx(1 - shares[int(look.split()[1]) - 1])


def test_one_look_is_the_plain_decision_at_95() -> None:
    decided = decide_sequentially(LATER, _table([3, -1, 1, 2, 0]), (5,))
    assert decided.level == 0.95 and decided.look == ""


def test_needed_labels_and_next_seeds() -> None:
    decided = [
        decide_sequentially(LATER, _table([3.0] * 5), (5, 10)),  # holds
        decide_sequentially(
            Claim("2", "c lower", "validation_loss_min_epoch", "c", "a", "lower"),
            {"a": _table([0] * 5)["a"], "c": _table([1, -1, 2, -2, 0])["b"]},
            (5, 10),
        ),  # inconclusive
    ]
    assert needed_labels(decided) == ["c", "a"]
    assert next_seeds((5, 10, 20, 40), 5) == range(5, 10)
    assert next_seeds((5, 10, 20, 40), 10) == range(10, 20)
    assert next_seeds((5, 10, 20, 40), 12) == range(12, 20)
    assert next_seeds((5, 10, 20, 40), 40) is None


def _outcome(label: str, seed: int, **measures: float) -> VariantOutcome:
    return VariantOutcome(
        variant=label, label=label, seed=seed, dataset="imdb", run_id=f"{label}-{seed}",
        validation_accuracy=0.8, test_metrics={"test/accuracy": 0.8},
        validation_loss_min_epoch=4, training_seconds=1.0, measures=measures,
    )  # fmt: skip


def test_the_next_look_trains_more_seeds_of_the_undecided_claims_variants_only() -> None:
    """imdb_dense, imdb_reduced and imdb_l2 on five seeds: claim 3 (L2's rise against the
    original's) is clear; claims 1, 2a and 2b (reduced against original) are not, so the
    next look trains seeds 5-9 of imdb_dense and imdb_reduced, not of imdb_l2."""
    noisy = [0.30, 0.26, 0.31, 0.25, 0.28]
    outcomes = []
    for seed in range(5):
        outcomes += [
            _outcome("imdb_dense", seed, validation_loss_min_epoch=4, **{
                "val/loss_last": 0.70, "val/loss_min": 0.28, "val/loss_rise": 0.42}),
            _outcome("imdb_reduced", seed, validation_loss_min_epoch=4 + (seed % 3) - 1, **{
                "val/loss_last": noisy[seed] + 0.4, "val/loss_min": noisy[seed],
                "val/loss_rise": 0.4}),
            _outcome("imdb_l2", seed, validation_loss_min_epoch=4, **{
                "val/loss_last": 0.40, "val/loss_min": 0.30, "val/loss_rise": 0.10 + seed / 1e4}),
        ]  # fmt: skip
    config = build_config(
        workdir="/nonexistent",
        variants=("imdb_dense", "imdb_reduced", "imdb_l2"),
        **study_overrides(None, 0, "auto", None, None),
    )
    decided, trials = next_look(config, outcomes)
    verdicts = {d.claim.number: d.verdict for d in decided}
    assert verdicts["3"] == "holds" and verdicts["2b"] == "inconclusive"
    assert sorted({t.label for t in trials}) == ["imdb_dense", "imdb_reduced"]
    assert sorted({t.seed for t in trials}) == [5, 6, 7, 8, 9]
    fixed = build_config(workdir="/nonexistent", variants=config.variants, seeds=(0, 1, 2, 3, 4))
    assert next_look(fixed, outcomes) == ([], [])


def test_seeds_auto_on_the_command_line() -> None:
    overrides = study_overrides(None, 0, "auto", None, "lecture")
    assert overrides["seeds"] == (0, 1, 2, 3, 4)
    assert (overrides["seed_plan"].first, overrides["seed_plan"].cap) == (5, 40)
    assert parse_seed_plan("auto:20").cap == 20 and parse_seed_plan("7") is None
    for bad in ("auto:5", "auto:x", "auto:101"):
        with pytest.raises(ConfigError, match=f"^--seeds '{bad}': write auto"):
            parse_seed_plan(bad)


def test_a_smoke_study_adds_seeds_until_decided_or_the_cap(
    prefect_server, data_slices, tmp_path
) -> None:
    """Real Keras on the slices: seeds 0-2, then seeds 3-4 only if a claim of imdb_dense
    against imdb_reduced is undecided at the first look; the parent runs say how the seeds
    were added, and the report says at which look each claim was decided."""
    from flows.pipeline import pipeline
    from keras_variants.tracking.store import client_for

    config = build_config(
        profile="smoke", data_dir=data_slices, workdir=tmp_path,
        variants=("imdb_dense", "imdb_reduced"), seeds=(0, 1, 2),
        seed_plan={"first": 3, "cap": 5}, promote=False,
    )  # fmt: skip
    result = pipeline(config)
    seeds = {}
    for o in result.outcomes:
        seeds.setdefault(o.label, set()).add(o.seed)
    assert seeds["imdb_dense"] == seeds["imdb_reduced"] in ({0, 1, 2}, {0, 1, 2, 3, 4})
    first_look = [o for o in result.outcomes if o.seed < 3]
    _, added = next_look(config, first_look)
    assert {t.seed for t in added} == seeds["imdb_dense"] - {0, 1, 2}
    parent = client_for(config).get_run(result.parent_run_ids["imdb"])
    assert {k: v for k, v in parent.data.params.items() if k.startswith("seeds.")} == {
        "seeds.rule": "auto", "seeds.first": "3", "seeds.cap": "5"
    }  # fmt: skip
    page = result.report.read_text()
    assert "looks at 3, 5 seeds" in page
    assert page.count(" of 2)</td>") == 3  # claims 1, 2a, 2b, each at its look
