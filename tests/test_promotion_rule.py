"""The promotion rule on hand-made evidence: a paired test, with the margin as a minimum
effect, and reasons that state the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from keras_variants.registry.gate_memo import pack_correct, recall, sealed, unpack_correct
from keras_variants.registry.promotion_rule import Evidence, decide, paired, reason


def _evidence(b: int, c: int, inputs: int = 10_000) -> Evidence:
    """``b`` inputs only the challenger gets right, ``c`` only the champion, 80% both."""
    return Evidence(inputs=inputs, both_right=inputs * 8 // 10, challenger_only=b, champion_only=c)


PROMOTION_RULE = [
    # b (challenger only right), c (champion only right), inputs, margin, significance,
    # force, promoted
    (412, 388, 10_000, 0.0, 0.05, False, False),  # +0.0024, p = 0.42: seed noise
    (30, 5, 1_000, 0.0, 0.05, False, True),  # +0.025, p = 2.2e-05
    (30, 5, 1_000, 0.03, 0.05, False, False),  # significant, but the gain is below the margin
    (30, 5, 1_000, 0.025, 0.05, False, False),  # exactly the margin is not more than it
    (30, 5, 1_000, 0.02, 0.05, False, True),
    (6, 0, 500, 0.0, 0.05, False, True),  # p = 2 / 2**6 = 0.031
    (5, 0, 500, 0.0, 0.05, False, False),  # p = 2 / 2**5 = 0.0625
    (5, 0, 500, 0.0, 0.0625, False, True),  # p equal to the level passes
    (5, 0, 500, 0.0, 1.0, False, True),  # level 1: any gain beyond the margin
    (1, 0, 500, 0.0, 1.0, False, True),
    (5, 5, 500, 0.0, 1.0, False, False),  # a tie never replaces the champion
    (3, 7, 500, 0.0, 1.0, False, False),  # nor does a worse model
    (0, 0, 500, 0.0, 1.0, False, False),  # nor the same answers
    (30, 0, 500, 0.0, 0.0, False, False),  # level 0: never, unless forced
    (0, 30, 500, 0.0, 0.05, True, True),  # forced
]


@pytest.mark.parametrize(
    ("b", "c", "inputs", "margin", "significance", "force", "promoted"), PROMOTION_RULE
)
def test_promotion_rule(b, c, inputs, margin, significance, force, promoted) -> None:
    assert decide(_evidence(b, c, inputs), margin, significance, force) is promoted


def test_no_champion_means_promoted() -> None:
    assert decide(None, margin=0.5, significance=0.0, force=False)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [(6, 0, 0.03125), (5, 0, 0.0625), (0, 5, 0.0625), (1, 1, 1.0), (0, 0, 1.0), (2, 1, 1.0)],
)
def test_mcnemar_exact_p_values_worked_by_hand(b, c, p) -> None:
    # Two-sided: twice the chance of a count at least this far from half, 2 * 2**-n at the
    # extremes; 2 of 3 is as even as 3 coins can be.
    assert _evidence(b, c).p_value == pytest.approx(p)


def test_reason_states_the_numbers() -> None:
    noise = reason(_evidence(412, 388), "3", margin=0.0, significance=0.05, force=False)
    assert noise == (
        "right on 412 inputs champion v3 got wrong, wrong on 388 it got right (test accuracy "
        "0.8412 vs 0.8388 on 10000 inputs, gain +0.0024), McNemar exact p = 0.42: not better "
        "beyond chance (p > 0.05)"
    )
    better = reason(_evidence(30, 5, 1_000), "7", margin=0.01, significance=0.05, force=False)
    assert better.endswith(
        "gain +0.0250), McNemar exact p = 2.2e-05: better beyond chance (p <= 0.05) by more "
        "than the margin 0.01"
    )
    small = reason(_evidence(30, 5, 1_000), "7", margin=0.03, significance=0.05, force=True)
    assert small.endswith(": the gain is not more than the margin 0.03 (forced)")


def test_paired_counts_each_kind_of_input() -> None:
    challenger = np.array([1, 1, 0, 0, 1, 1], bool)
    champion = np.array([1, 0, 1, 0, 0, 1], bool)
    evidence = paired(challenger, champion)
    assert evidence == Evidence(inputs=6, both_right=2, challenger_only=2, champion_only=1)
    assert (evidence.challenger_accuracy, evidence.champion_accuracy) == (4 / 6, 3 / 6)
    with pytest.raises(ValueError, match="scored on different inputs: 6 answers against 5"):
        paired(challenger, champion[:5])


def test_per_input_correctness_is_remembered_as_packed_bits() -> None:
    correct = np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], bool)
    assert pack_correct(correct) == "9:sIA="  # bytes 0b10110000 0b10000000
    assert unpack_correct("9:sIA=").tolist() == correct.tolist()
    assert len(pack_correct(np.ones(25_000, bool))) == 6 + 4_168  # "25000:" + 3,125 bytes


FILES = '{"MLmodel":"a1","served_model.py":"b2"}'  # a version's files.sha256 record
OTHER_FILES = '{"MLmodel":"a1","served_model.py":"c3"}'
ANSWERS = np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], bool)
MEMO = sealed(FILES, "k1", ANSWERS)
ALL_RIGHT = sealed(FILES, "k1", np.ones(9, bool))
SEAL = MEMO[-32:]  # what the tag holds when the answers are an artifact of the run


@pytest.mark.parametrize(
    ("tags", "key", "stored", "trusted"),
    [
        # The answers in the run's artifact, their seal on the version.
        ({"files.sha256": FILES, "gate.correct.k1": SEAL}, "k1", "9:sIA=", True),
        ({"files.sha256": FILES, "gate.correct.k1": SEAL}, "k1", "9:/4A=", False),  # edited
        ({"files.sha256": FILES, "gate.correct.k1": SEAL}, "k1", None, False),  # artifact gone
        ({"files.sha256": OTHER_FILES, "gate.correct.k1": SEAL}, "k1", "9:sIA=", False),
        # The answers in the tag (a version with no run; memos written before).
        ({"files.sha256": FILES, "gate.correct.k1": MEMO}, "k1", None, True),
        # The bits edited, the seal kept: not this version's answers.
        ({"files.sha256": FILES, "gate.correct.k1": "9:/4A=:" + SEAL}, "k1", None, False),
        # The tag's answers win over an artifact's: they are what the seal covers.
        ({"files.sha256": FILES, "gate.correct.k1": "9:/4A=:" + SEAL}, "k1", "9:sIA=", False),
        # Written for other files (the version's files were replaced and re-recorded).
        ({"files.sha256": OTHER_FILES, "gate.correct.k1": MEMO}, "k1", None, False),
        # Copied under another scorer's key (other inputs, labels or scoring code).
        ({"files.sha256": FILES, "gate.correct.k2": MEMO}, "k2", None, False),
        # Written before memos were sealed, or by hand.
        ({"files.sha256": FILES, "gate.correct.k1": "9:sIA="}, "k1", None, False),
        ({"files.sha256": FILES, "gate.correct.k1": "garbage"}, "k1", "9:sIA=", False),
        ({"gate.correct.k1": MEMO}, "k1", None, False),  # no file record to bind it to
        ({"files.sha256": FILES}, "k1", "9:sIA=", False),  # nothing remembered
    ],
)
def test_a_memo_is_trusted_only_under_its_seal(
    tags: dict, key: str, stored: str | None, trusted: bool
) -> None:
    found = recall(tags, key, stored)
    assert (found is not None) is trusted
    if trusted:
        assert found.tolist() == ANSWERS.tolist()
    assert recall({"files.sha256": FILES, "gate.correct.k1": ALL_RIGHT}, "k1").all()
