"""Studies: seeds and sweeps parsed and validated, trials expanded, aggregates and the
lecture claims' verdicts on small hand-made metric tables."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from keras_variants.config.trials import trials
from keras_variants.errors import ConfigError
from keras_variants.registry.gate import select_challenger
from keras_variants.studies.claims import LECTURE_CLAIMS, Claim, decide_claim
from keras_variants.studies.study import parse_seeds, parse_sweeps, run_measures, summarize
from keras_variants.tracking.records import VariantRecord
from tests.helpers import BIN


@pytest.mark.parametrize(
    ("text", "seeds"), [("1", (0,)), ("5", (0, 1, 2, 3, 4)), ("0,3,7", (0, 3, 7)), ("4,", None)]
)
def test_seeds(text: str, seeds: tuple[int, ...] | None) -> None:
    if seeds is None:
        with pytest.raises(ConfigError, match="--seeds '4,'"):
            parse_seeds(text)
    else:
        assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0", "-2", "a", "1,1", "2,-1"])
def test_bad_seeds_are_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_seeds(text)
    assert str(raised.value).startswith(f"--seeds {text!r}:") and "\n" not in str(raised.value)


def test_sweeps_are_typed_against_the_variant() -> None:
    sweeps = parse_sweeps(
        [
            "imdb_dropout.dropout=0.2,0.5",
            "imdb_l2.l2=0.0001,0.001,0.01",
            "imdb_dense.hidden_units=8x8",
        ]
    )
    assert sweeps == {
        "imdb_dropout": {"dropout": (0.2, 0.5)},
        "imdb_l2": {"l2": (0.0001, 0.001, 0.01)},
        "imdb_dense": {"hidden_units": ((8, 8),)},
    }


BAD_SWEEPS = [
    ("imdb_foo.dropout=0.2", "--set imdb_foo.dropout=0.2: unknown variant 'imdb_foo'; choose"),
    ("imdb_l2.colour=1", "--set imdb_l2.colour=1: 'colour' cannot be swept; choose from"),
    ("imdb_l2.l2=", "--set imdb_l2.l2=: no values; write it as imdb_l2.l2=VALUE,VALUE"),
    ("imdb_l2.l2=big", "--set imdb_l2.l2=big: l2='big' is not valid (input should be a valid"),
    ("imdb_dropout.dropout=1.5", "--set imdb_dropout.dropout=1.5: dropout='1.5' is not valid"),
    ("imdb_dense.epochs=0", "--set imdb_dense.epochs=0: epochs='0' is not valid (input should"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SWEEPS)
def test_bad_sweeps_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_sweeps([text])
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_trials_are_variant_by_point_by_seed() -> None:
    sweeps = parse_sweeps(["imdb_dropout.dropout=0.2,0.5"])
    runs = trials(["imdb_dense", "imdb_dropout"], (0, 1), sweeps)
    assert [t.run_name for t in runs] == [
        "imdb_dense seed 0",
        "imdb_dense seed 1",
        "imdb_dropout dropout:0.2 seed 0",
        "imdb_dropout dropout:0.2 seed 1",
        "imdb_dropout seed 0",  # 0.5 is the lecture's value: the plain name
        "imdb_dropout seed 1",
    ]
    assert [t.variant.dropout for t in runs] == [0.0, 0.0, 0.2, 0.2, 0.5, 0.5]


def test_summary_mean_std_and_t_interval() -> None:
    summary = summarize([0.80, 0.82, 0.84])
    assert summary.mean == pytest.approx(0.82) and summary.std == pytest.approx(0.02)
    # mean +- t(0.975, 2) * std / sqrt(3), t = 4.302653
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert (summary.low, summary.high) == pytest.approx((0.82 - half, 0.82 + half), abs=1e-6)
    one = summarize([0.5])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.low) and math.isnan(one.std)


def test_run_measures_from_the_curve() -> None:
    measures = run_measures(
        {"test/accuracy": 0.86, "validation_loss_min_epoch": 2}, [0.40, 0.30, 0.35, 0.50]
    )
    assert measures == {
        "test/accuracy": 0.86,
        "val/loss_min": 0.30,
        "validation_loss_min_epoch": 2,
        "val/loss_last": 0.50,
        "val/loss_rise": pytest.approx(0.20),
    }


LATER = Claim("1", "B overfits later", "validation_loss_min_epoch", "b", "a", "higher")


def _table(a: list[float], b: list[float]) -> dict:
    key = LATER.measure
    return {
        "a": {seed: {key: value} for seed, value in enumerate(a)},
        "b": {seed: {key: value} for seed, value in enumerate(b)},
    }


VERDICTS = [
    # baseline a, subject b, verdict
    ([4, 3, 4, 5, 4], [8, 9, 8, 9, 10], "holds"),
    ([8, 9, 8, 9, 10], [4, 3, 4, 5, 4], "does not hold"),
    ([4, 8, 4, 8, 6], [6, 6, 6, 6, 6], "inconclusive"),  # differences +2 -2 +2 -2 0
    # differences +0.2 -0.2 +0.2 -0.2 0: the 90% interval, 0 +- 2.132 * 0.1581 / sqrt(5)
    # = +-0.151, lies within the one-epoch margin: practically nil (TOST)
    ([4.8, 5.2, 4.8, 5.2, 5], [5, 5, 5, 5, 5], "does not hold"),
    ([4, 4], [9, 9], "inconclusive"),  # two seeds only
    ([4, 4, 4], [4, 4, 4], "does not hold"),  # no difference at all
    ([4, 4, 4], [6, 6, 6], "holds"),  # the same difference on every seed
]


@pytest.mark.parametrize(("a", "b", "verdict"), VERDICTS)
def test_claim_verdicts(a: list[float], b: list[float], verdict: str) -> None:
    decided = decide_claim(LATER, _table(a, b))
    assert decided.verdict == verdict
    assert decided.n == min(len(a), len(b))
    assert decided.mean_difference == pytest.approx(sum(b) / len(b) - sum(a) / len(a))


def test_practically_nil_says_so_and_names_the_test() -> None:
    decided = decide_claim(LATER, _table([4.8, 5.2, 4.8, 5.2, 5], [5, 5, 5, 5, 5]))
    assert decided.why.startswith("no practical difference: the 90% interval")
    assert decided.why.endswith("lies within +-1 (TOST)")
    wide = decide_claim(LATER, _table([4, 8, 4, 8, 6], [6] * 5))
    assert wide.why == "the 95% interval spans zero and reaches past +-1"


def test_a_smaller_alpha_widens_the_interval_that_decides() -> None:
    """Differences +1 +2 +1 +2 +1.5 (mean 1.5, sd 0.5): at alpha 0.05 the interval
    1.5 +- 2.776 * 0.5 / sqrt(5) = [0.879, 2.121] holds; at alpha 0.0001 it is
    1.5 +- 15.544 * 0.2236 = [-1.976, 4.976] and spans zero."""
    table = _table([4, 4, 4, 4, 4], [5, 6, 5, 6, 5.5])
    assert decide_claim(LATER, table).verdict == "holds"
    strict = decide_claim(LATER, table, alpha=0.0001)
    assert strict.verdict == "inconclusive" and strict.level == pytest.approx(0.9999)
    assert (strict.low, strict.high) == pytest.approx((-1.976, 4.976), abs=0.01)


def test_a_lower_is_better_claim_and_missing_seeds() -> None:
    lower = Claim("2", "B has lower loss", "val/loss_min", "b", "a", "lower")
    table = {
        "a": {0: {"val/loss_min": 0.30}, 1: {"val/loss_min": 0.31}, 2: {"val/loss_min": 0.29}},
        "b": {0: {"val/loss_min": 0.27}, 1: {"val/loss_min": 0.28}, 2: {"val/loss_min": 0.27}},
    }
    assert decide_claim(lower, table).verdict == "holds"
    del table["b"][2]
    assert decide_claim(lower, table).verdict == "inconclusive"  # only two pairs left
    assert decide_claim(lower, {"a": table["a"]}).why.startswith("no seed has both")


def test_the_lecture_claims_name_the_lecture_variants() -> None:
    assert [c.number for c in LECTURE_CLAIMS] == ["1", "2a", "2b", "3", "4a", "4b", "5"]
    names = {"imdb_dense", "imdb_reduced", "imdb_l2", "imdb_dropout", "mnist_dense", "mnist_cnn"}
    assert {c.subject for c in LECTURE_CLAIMS} | {c.baseline for c in LECTURE_CLAIMS} == names


def _record(label: str, seed: int, val_accuracy: float) -> VariantRecord:
    variant = label.split()[0]
    return VariantRecord(
        variant=variant,
        dataset="imdb",
        run_id=f"{label}-{seed}",
        params={"seed": str(seed)},
        metrics={"val/accuracy": val_accuracy},
        tags={"label": label},
        curves={},
    )


def test_challenger_is_the_best_mean_then_its_best_seed() -> None:
    records = [
        _record("imdb_dense", 0, 0.90),  # the best single run ...
        _record("imdb_dense", 1, 0.80),
        _record("imdb_dense", 2, 0.80),
        _record("imdb_l2", 0, 0.86),  # ... but imdb_l2 is better on average
        _record("imdb_l2", 1, 0.88),
        _record("imdb_l2", 2, 0.85),
    ]
    assert select_challenger(records).run_id == "imdb_l2-1"
    assert select_challenger(records[:1]).run_id == "imdb_dense-0"


def test_a_bad_set_fails_in_one_line_before_anything_starts(tmp_path) -> None:
    done = subprocess.run(
        [str(BIN / "variants"), "run", "--set", "imdb_l2.l2=big", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: Invalid value for --set: l2='big' is not valid (input should be a valid number, "
        "unable to parse string as a number) (see 'variants run --help')"
    ]
    assert not (tmp_path / "mlflow.db").exists()


def test_three_seed_smoke_study_logs_every_trial_and_the_aggregates(
    prefect_server, data_slices, tmp_path
) -> None:
    from flows.pipeline import pipeline
    from keras_variants.config.pipeline import build_config
    from keras_variants.tracking.store import client_for

    config = build_config(
        profile="smoke",
        data_dir=data_slices,
        workdir=tmp_path,
        variants=("imdb_dense", "imdb_dropout"),
        seeds=(0, 1, 2),
        sweeps={"imdb_dropout": {"dropout": (0.2, 0.5)}},
        promote=False,
    )
    result = pipeline(config)
    client = client_for(config)
    parent = client.get_run(result.parent_run_ids["imdb"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    names = sorted(c.info.run_name for c in children)
    assert names == sorted(
        f"{label} seed {seed}"
        for label in ("imdb_dense", "imdb_dropout dropout:0.2", "imdb_dropout")
        for seed in (0, 1, 2)
    )
    assert {c.data.params["seed"] for c in children} == {"0", "1", "2"}
    assert {c.data.params["dropout"] for c in children} == {"0.0", "0.2", "0.5"}
    metrics = parent.data.metrics
    for label in ("imdb_dense", "imdb_dropout dropout:0.2", "imdb_dropout"):
        accuracies = [
            c.data.metrics["test/accuracy"] for c in children if c.data.tags["label"] == label
        ]
        # Known answers for three seeds: the sample standard deviation, and Student's t
        # quantile t(0.975, 2 degrees of freedom) = 4.302653 for the 95% interval.
        mean, std = float(np.mean(accuracies)), float(np.std(accuracies, ddof=1))
        assert metrics[f"{label}/test/accuracy/mean"] == pytest.approx(mean)
        assert metrics[f"{label}/test/accuracy/std"] == pytest.approx(std)
        low = mean - 4.302653 * std / 3**0.5
        assert metrics[f"{label}/test/accuracy/ci95_low"] == pytest.approx(low, abs=1e-6)
        assert metrics[f"{label}/test/accuracy/n"] == 3
        for measure in ("val/loss_min", "validation_loss_min_epoch", "val/loss_last"):
            assert f"{label}/{measure}/ci95_high" in metrics
    html = result.report.read_text()
    assert "Lecture claims" in html and "4a. Dropout (0.5) is &quot;slightly better&quot;" in html
    assert "Lecture, book and ours" in html
    assert "imdb_dropout: the best lowest validation loss came with" in html


def test_claim_rows_print_epoch_differences_as_epochs() -> None:
    from keras_variants.reporting.findings import verdict_row
    from keras_variants.studies.claims import Decided

    epochs = Claim("9", "stops later", "validation_loss_min_epoch", "a", "b", "higher")
    row = verdict_row(Decided(epochs, "holds", 3, 15.0, 12.5, 17.25, "why"))
    assert (row["difference"], row["interval"]) == ("+15.0", "[+12.5, +17.2]")
    losses = Claim("9", "lower loss", "val/loss_min", "a", "b", "lower")
    row = verdict_row(Decided(losses, "holds", 3, -0.0123, -0.02, -0.004, "why"))
    assert (row["difference"], row["interval"]) == ("-0.0123", "[-0.0200, -0.0040]")


def test_markdown_claims_table_is_narrow_with_the_verdict_in_it() -> None:
    """Prefect's artifact view clips wide tables: the table holds the claim's number and the
    short cells, verdict included; statement, measure and reason follow as a list."""
    from keras_variants.reporting.findings import verdict_row
    from keras_variants.reporting.report import Report
    from keras_variants.reporting.report_pages import to_markdown
    from keras_variants.studies.claims import Decided

    claim = Claim("9", "Stops later.", "validation_loss_min_epoch", "a", "b", "higher")
    row = verdict_row(Decided(claim, "holds", 3, 15.0, 12.5, 17.25, "the reason"))
    markdown = to_markdown(Report("t", {}, {}, {}, claims=[row])).splitlines()
    table = markdown.index("| claim | mean difference | 95% interval | seeds | verdict |")
    assert markdown[table + 2] == "| 9 | +15.0 | [+12.5, +17.2] | 3 | **holds** |"
    assert markdown[table + 4] == (
        "- **9. Stops later.** Measure (paired by seed): epoch of lowest validation loss: "
        "a - b (expected > 0); holds: the reason."
    )


def test_study_lecture_is_the_lectures_six_models_on_five_seeds_with_two_dropouts() -> None:
    """``--study lecture`` as the command line turns it into a config: 6 variants x 5
    seeds, imdb_dropout at 0.2 and 0.5: 35 trials; --seeds replaces its seeds."""
    from keras_variants.cli.options import study_overrides as _study_overrides
    from keras_variants.config.pipeline import build_config

    overrides = _study_overrides(None, 0, None, None, "lecture")
    config = build_config(profile="smoke", workdir=Path("/nonexistent"), **overrides)
    assert config.seeds == (0, 1, 2, 3, 4)
    assert set(config.variants) == {
        "mnist_dense", "mnist_cnn", "imdb_dense", "imdb_reduced", "imdb_l2", "imdb_dropout"
    }  # fmt: skip
    assert len(config.trials()) == (6 + 1) * 5  # imdb_dropout twice
    dropouts = {t.variant.dropout for t in config.trials() if t.variant.name == "imdb_dropout"}
    assert dropouts == {0.2, 0.5}
    assert _study_overrides(None, 0, "0,7", None, "lecture")["seeds"] == (0, 7)


def test_a_one_seed_report_says_once_what_the_claims_need() -> None:
    """With fewer than 3 paired seeds no claim can be decided: the report says so once,
    shows what the run measured without a verdict, and opens on the champions and the
    variants, not on the claims."""
    from keras_variants.reporting.findings import verdict_row
    from keras_variants.reporting.report import Report
    from keras_variants.reporting.report_pages import to_html, to_markdown
    from keras_variants.studies.claims import Decided

    claims = [
        verdict_row(Decided(Claim(n, f"Claim {n}.", "val/loss_min", "a", "b", "lower"),
                            "inconclusive", 1, -0.01, float("nan"), float("nan"),
                            "only 1 paired seed(s); at least 3 are needed"))
        for n in ("1", "2a", "5")
    ]  # fmt: skip
    rows = {"imdb": [{"variant": "a", "test/accuracy": 0.8}, {"variant": "b"}]}
    report = Report("t", rows, {}, {}, decisions=["imdb-sentiment v2: promoted"], claims=claims)
    markdown = to_markdown(report)
    assert markdown.count("at least 3 paired seeds") == 1 and "inconclusive" not in markdown
    assert "| 2a. Claim 2a. | lowest validation loss: a - b (expected < 0) | -0.0100 |" in markdown
    order = [markdown.index(h) for h in ("## Champions", "## Variants", "## Lecture claims")]
    assert order == sorted(order)
    page = to_html(report)
    assert page.count("at least 3 paired seeds") == 1 and "inconclusive" not in page
    assert page.index("Champions") < page.index("Variants") < page.index("Lecture claims")
