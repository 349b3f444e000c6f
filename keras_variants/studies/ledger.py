"""The ledger: each lecture claim and headline number as the lecture, the book and our
seeds give it, with a verdict on whether the book's number (and the lecture's) agrees
with ours.

A book's number is one run; ours are several seeds. So a source *agrees* when its number
(widened by its rounding: "88%" is 0.875-0.885) falls within the range one more run of
ours would fall in with 95% probability, the t prediction interval mean +- t s sqrt(1 +
1/n); it *differs* when it falls outside; we *cannot tell* with fewer than two seeds, or
when the quantity was not measured. Words without a number (the lecture's "slightly
better") are judged by the claim's verdict: holds agrees, does not hold differs.

Pure functions over plain numbers and :mod:`~keras_variants.studies.sources`' entries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from keras_variants.studies.claims import Verdict
from keras_variants.studies.sources import Entry, Protocol, Reference
from keras_variants.studies.study import summarize

Agreement = Literal["agrees", "differs", "cannot tell"]
LEVEL = 0.95
FROM_VERDICT: dict[str, Agreement] = {
    "holds": "agrees",
    "does not hold": "differs",
    "inconclusive": "cannot tell",
}
# How each protocol's numbers are made, for the line on why a source and ours can differ.
SETUP = {
    "lecture": "validates on rows held out of the training data",
    "book": "trains on all training rows and validates on the test rows",
    "other": "validates on the last 40% of the training rows",
}


def one_run_range(
    values: Sequence[float],
    level: float = LEVEL,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> tuple[float, float] | None:
    """Where one more run's value falls with probability ``level``, from ``values`` (one
    per seed): the t prediction interval, cut to the values the measure can take
    (``bounds``: an epoch is 1-20, an accuracy 0-1); None with fewer than two values."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) < 2:
        return None
    mean, std = float(data.mean()), float(data.std(ddof=1))
    if std == 0:
        return mean, mean
    from scipy import stats

    t = float(stats.t.ppf(0.5 + level / 2, len(data) - 1))
    half = t * std * math.sqrt(1 + 1 / len(data))
    return max(mean - half, bounds[0]), min(mean + half, bounds[1])


def agreement(value: float, precision: float, span: tuple[float, float] | None) -> Agreement:
    """Whether a source's ``value`` (+- ``precision``/2) meets ``span``, ours for one run."""
    if span is None:
        return "cannot tell"
    low, high = value - precision / 2, value + precision / 2
    return "agrees" if low <= span[1] and high >= span[0] else "differs"


@dataclass(frozen=True)
class Ours:
    """Our measure of an entry over ``n`` seeds: the mean, its 95% interval (NaN for one
    seed), and where one more run would fall (None for one seed)."""

    n: int
    mean: float
    low: float
    high: float
    one_run: tuple[float, float] | None
    protocol: Protocol


@dataclass(frozen=True)
class Row:
    """One line of the ledger."""

    entry: Entry
    ours: Ours | None  # None: this run did not train what the entry compares
    lecture: Agreement | None  # None: the lecture states nothing here
    book: tuple[tuple[Reference, Agreement | None], ...]  # None: words, judged by no number
    primary: Reference | None  # the book's number the verdict is on
    verdict: Agreement  # the book's primary number against ours
    why: str


def primary_reference(entry: Entry, protocol: Protocol) -> Reference | None:
    """The book's number to judge ours by: one whose setup ``protocol`` repeats, a
    notebook's (measured) before a text's (rounded); else the first with a number."""
    numbers = [r for r in entry.book if r.value is not None]
    for candidates in ([r for r in numbers if r.protocol == protocol], numbers):
        for kind in ("notebook", "text"):
            found = [r for r in candidates if r.kind == kind]
            if found:
                return found[0]
    return None


def ledger_row(
    entry: Entry,
    values: Sequence[float],
    protocol: Protocol,
    claim_verdict: Verdict | None = None,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> Row:
    """The entry's line from ``values``, ours one per seed (for a claim: its paired
    differences), made under ``protocol``; ``claim_verdict`` judges the words; ``bounds``:
    the values the measure can take."""
    ours = None
    if len(values):
        summary = summarize(values)
        span = one_run_range(values, bounds=bounds)
        ours = Ours(summary.n, summary.mean, summary.low, summary.high, span, protocol)
    span = ours.one_run if ours else None
    if span is not None and span[0] <= bounds[0] and span[1] >= bounds[1]:
        span = None  # one run could take any value: nothing to judge by

    def judge(value: float | None, precision: float = 0.0) -> Agreement | None:
        if value is not None:
            return agreement(value, precision, span)
        if claim_verdict is not None:
            return FROM_VERDICT[claim_verdict]
        return None

    lecture = judge(entry.lecture.value) if entry.lecture else None
    book = tuple(
        (r, agreement(r.value, r.precision, span) if r.value is not None else None)
        for r in entry.book
    )
    primary = primary_reference(entry, protocol)
    verdict: Agreement = "cannot tell"
    if primary is not None and primary.value is not None:
        verdict = agreement(primary.value, primary.precision, span)
    why = why_they_differ(entry, primary, ours, span is None)
    return Row(entry, ours, lecture, book, primary, verdict, why)


def why_they_differ(
    entry: Entry, primary: Reference | None, ours: Ours | None, no_range: bool = False
) -> str:
    """The entry's reason, led by whether this run repeated the primary source's setup."""
    if ours is None:
        return "not measured in this run: " + entry.why
    if ours.n < 2:
        return "one seed gives no range to judge by; " + entry.why
    if no_range:
        return "our seeds spread so far that one run could take any value: more seeds; " + (
            entry.why
        )
    if primary is None or primary.protocol == ours.protocol:
        return entry.why
    if primary.protocol == "other":
        setup = f"the {primary.name} {SETUP['other']}, as neither protocol here does; "
    else:
        setup = (
            f"other setups: the {primary.name} is the {primary.protocol} protocol's, this "
            f"run the {ours.protocol}'s (--protocol {primary.protocol} repeats it); "
        )
    return setup + entry.why
