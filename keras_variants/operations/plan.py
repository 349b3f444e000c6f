"""What ``variants schedule`` is asked to serve (:class:`Plan`) and its checks, made before
anything starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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
    guard: str | None = None  # the URL MLflow's webhook posts champion moves to

    @property
    def trains(self) -> bool:
        return self.cron is not None or self.on_new_data


def check_plan(plan: Plan) -> None:
    """Refuse, before anything starts, a schedule with nothing to run, a half-given inbox,
    or a bad URL."""
    from keras_variants.operations.inbox import check_inbox
    from keras_variants.operations.notify import check_url

    if not plan.trains and plan.inbox is None and plan.guard is None:
        raise ConfigError(
            "nothing to schedule: pass --cron EXPR, --on-new-data, "
            "--score-inbox DIR --model NAME and/or --guard-champion URL "
            "(see 'variants schedule --help')"
        )
    if (plan.inbox is None) != (plan.model is None):
        raise ConfigError("--score-inbox DIR and --model NAME go together: pass both")
    if plan.inbox is not None:
        check_inbox(plan.inbox)
    if plan.notify is not None:
        check_url(plan.notify)
    if plan.guard is not None:
        check_guard(plan.guard)


def check_guard(url: str) -> None:
    """The receiver's URL (it listens on its host and port) and the webhook's secret."""
    import os

    from keras_variants.operations.guard_receiver import PATH
    from keras_variants.operations.mlflow_webhooks import MIN_SECRET_CHARS, SECRET_ENV

    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port or parts.path != PATH:
        raise ConfigError(
            f"--guard-champion: pass the URL MLflow posts to, as http://HOST:PORT{PATH} "
            f"(the receiver listens on HOST:PORT), e.g. http://127.0.0.1:5055{PATH}"
        )
    if len(os.environ.get(SECRET_ENV, "").strip()) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"--guard-champion: set {SECRET_ENV} to a secret of at least {MIN_SECRET_CHARS} "
            "characters (MLflow signs each webhook with it), e.g. "
            f"export {SECRET_ENV}=$(openssl rand -hex 24)"
        )
