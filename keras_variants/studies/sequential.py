"""Seeds until decided: the looks of a study that adds seeds in batches until every claim
is decided, the error rate each look may spend, and what to train next.

The rule: looks after ``first`` seeds, then at twice as many each time, the last at
``cap`` (5, 10, 20, 40: the interval's width halves every two looks, so each look has a
real chance to decide what the last could not, for the same few looks' shares). A
claim is decided at the first look where its interval decides it
(:func:`~keras_variants.studies.claims.decide_claim`); to keep its error rate at ``alpha``
over all the looks, each of the K planned looks spends ``alpha / K`` (Bonferroni over the
looks: the chance of a wrong verdict at any look is at most the sum of the looks' shares,
conservative since the looks' statistics are correlated). An equal split, not an
O'Brien-Fleming-type one that spends little early: with 5 seeds the t distribution has 4
degrees of freedom, and O'Brien-Fleming's first share (0.00009 of 0.05 over four looks)
asks for t > 16, so even the CNN's clear lead over the dense network (t = 9 on 5 seeds)
would wait for 10 seeds, 5 more CNN trials; the equal split decides it at the first look.

Pure functions; SciPy for the t quantiles (in ``claims``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from keras_variants.studies.claims import ALPHA, Claim, Decided, decide_claim, paired_seeds

RULE = "Bonferroni over the planned looks (each spends an equal share of the error rate)"


def look_sizes(first: int, cap: int) -> tuple[int, ...]:
    """Seeds at each look: ``first``, then twice as many each time, the last ``cap``."""
    sizes = [first]
    while sizes[-1] < cap:
        sizes.append(min(2 * sizes[-1], cap))
    return tuple(sizes)


def spent_alpha(sizes: Sequence[int], alpha: float = ALPHA) -> tuple[float, ...]:
    """The error rate each look spends: ``alpha`` split equally over the looks."""
    return (alpha / len(sizes),) * len(sizes)


def decide_sequentially(
    claim: Claim,
    by_seed: Mapping[str, Mapping[int, Mapping[str, float]]],
    sizes: Sequence[int],
    alpha: float = ALPHA,
) -> Decided:
    """The claim decided at the first look (its first ``sizes[k]`` paired seeds, error rate
    the look's share) that decides it; else as the last look with seeds left it. One look:
    :func:`decide_claim` on every paired seed at ``alpha``."""
    if len(sizes) == 1:
        return decide_claim(claim, by_seed, alpha)
    seeds = paired_seeds(claim, by_seed)
    shares = spent_alpha(sizes, alpha)
    for k, (size, share) in enumerate(zip(sizes, shares, strict=True)):
        if size > len(seeds) and k > 0:
            break
        decided = decide_claim(claim, by_seed, share, seeds[:size])
        decided = replace(decided, look=f"look {k + 1} of {len(sizes)}")
        if decided.verdict != "inconclusive":
            break
    return decided


def needed_labels(decided: Iterable[Decided]) -> list[str]:
    """The labels that the undecided claims compare, in the claims' order."""
    labels: list[str] = []
    for d in decided:
        if d.verdict == "inconclusive":
            labels += [x for x in (d.claim.subject, d.claim.baseline) if x not in labels]
    return labels


def next_seeds(sizes: Sequence[int], trained: int) -> range | None:
    """The seeds to add after ``trained`` seeds: up to the next look's size; None at the
    last look."""
    later = [size for size in sizes if size > trained]
    return range(trained, later[0]) if later else None
