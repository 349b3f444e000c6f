"""The promotion rule: where promotion is decided, from evidence.

Challenger and champion answer the same served test inputs, so the comparison is paired:
what matters is on how many inputs one is right where the other is wrong. The challenger
is promoted when it is better beyond chance on those inputs (McNemar's exact test: under
"no difference" each discordant input is a fair coin) and its gain in test accuracy is
more than the margin (a minimum effect). Pure functions, no I/O; the gate
(:mod:`keras_variants.registry.gate`) scores the models and records the decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Evidence:
    """The challenger against the champion, input by input, on the same test inputs."""

    inputs: int
    both_right: int
    challenger_only: int  # right where the champion was wrong
    champion_only: int  # wrong where the champion was right

    @property
    def challenger_accuracy(self) -> float:
        return (self.both_right + self.challenger_only) / max(self.inputs, 1)

    @property
    def champion_accuracy(self) -> float:
        return (self.both_right + self.champion_only) / max(self.inputs, 1)

    @property
    def gain(self) -> float:
        """The challenger's test accuracy minus the champion's."""
        # Counts, not two rounded accuracies: no float noise at exactly the margin.
        return (self.challenger_only - self.champion_only) / max(self.inputs, 1)

    @property
    def p_value(self) -> float:
        """McNemar's exact test, two-sided: the chance of discordant counts at least this
        uneven if either model were as likely to be the one that is right."""
        from scipy.stats import binomtest  # SciPy only when a champion is compared

        discordant = self.challenger_only + self.champion_only
        if discordant == 0:
            return 1.0
        return float(binomtest(self.challenger_only, discordant, 0.5).pvalue)


def paired(challenger: np.ndarray, champion: np.ndarray) -> Evidence:
    """The evidence from two per-input correctness vectors over the same inputs."""
    challenger, champion = np.asarray(challenger, bool), np.asarray(champion, bool)
    if challenger.shape != champion.shape:
        raise ValueError(
            f"scored on different inputs: {challenger.size} answers against {champion.size}"
        )
    return Evidence(
        inputs=int(challenger.size),
        both_right=int((challenger & champion).sum()),
        challenger_only=int((challenger & ~champion).sum()),
        champion_only=int((~challenger & champion).sum()),
    )


def decide(evidence: Evidence | None, margin: float, significance: float, force: bool) -> bool:
    """Promote when there is no champion (``evidence`` is None), when forced, or when the
    challenger's test accuracy beats the champion's by more than ``margin`` and McNemar's
    p-value is at most ``significance`` (1 asks for no test: any gain beyond the margin)."""
    if evidence is None or force:
        return True
    return round(evidence.gain, 9) > margin and evidence.p_value <= significance


def reason(
    evidence: Evidence, champion: str, margin: float, significance: float, force: bool
) -> str:
    """Why :func:`decide` said what it said, with the numbers it said it from."""
    e = evidence
    facts = (
        f"right on {e.challenger_only} inputs champion v{champion} got wrong, wrong on "
        f"{e.champion_only} it got right (test accuracy {e.challenger_accuracy:.4f} vs "
        f"{e.champion_accuracy:.4f} on {e.inputs} inputs, gain {e.gain:+.4f}), "
        f"McNemar exact p = {_p(e.p_value)}"
    )
    if round(e.gain, 9) <= margin:
        why = f"the gain is not more than the margin {margin:g}"
    elif e.p_value > significance:
        why = f"not better beyond chance (p > {significance:g})"
    else:
        why = f"better beyond chance (p <= {significance:g}) by more than the margin {margin:g}"
    if force:
        return f"{facts}: {why} (forced)"
    return f"{facts}: {why}"


def _p(p: float) -> str:
    """Two significant digits, as a p-value is read: 0.41, 0.0012, 3.1e-07."""
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
