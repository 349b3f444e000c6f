"""What ``variants schedule`` is asked to serve (:class:`Plan`) and its checks, made before
anything starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keras_variants.errors import ConfigError


@dataclass(frozen=True)
class Plan:
    """What to serve, as the user asked for it."""

    name: str
    cron: str | None = None
    on_new_data: bool = False
    inbox: Path | None = None
    model: str | None = None
    notify: str | None = None

    @property
    def trains(self) -> bool:
        return self.cron is not None or self.on_new_data


def check_plan(plan: Plan) -> None:
    """Refuse, before anything starts, a schedule with nothing to run, a half-given inbox,
    or a bad URL."""
    from keras_variants.operations.inbox import check_inbox
    from keras_variants.operations.notify import check_url

    if not plan.trains and plan.inbox is None:
        raise ConfigError(
            "nothing to schedule: pass --cron EXPR, --on-new-data and/or "
            "--score-inbox DIR --model NAME (see 'variants schedule --help')"
        )
    if (plan.inbox is None) != (plan.model is None):
        raise ConfigError("--score-inbox DIR and --model NAME go together: pass both")
    if plan.inbox is not None:
        check_inbox(plan.inbox)
    if plan.notify is not None:
        check_url(plan.notify)
