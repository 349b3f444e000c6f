"""The flows that prefect.yaml's deployments run (and ``variants schedule`` serves), each
taking a run's options as plain parameters (``prefect deployment run train/scheduled --param
profile=smoke``), the same for every deployment, and doing the project's flow's work in its
own run, with the typed config that
:func:`~keras_variants.operations.declarations.run_config` makes of them. So a deployment's
run holds the pipeline's (or the inbox's) tasks, as when the project's flow itself was
deployed; only a training run that asks for another task runner (Dask, more than
:data:`TRAIN_THREADS` trainings at once) runs the pipeline as a subflow on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from flows.inbox import InboxResult, score_inbox
from flows.pipeline import PipelineResult, pipeline, run_pipeline
from keras_variants.config.pipeline import PipelineConfig
from keras_variants.operations.declarations import run_config

TRAIN_THREADS = 2  # the pipeline's own default: trainings side by side


def runs_inline(config: PipelineConfig) -> bool:
    """Whether the training deployment's own run (threads, :data:`TRAIN_THREADS` of them)
    is the task runner ``config`` asks for."""
    return config.runner != "dask" and config.max_parallel == TRAIN_THREADS


@flow(name="train", task_runner=ThreadPoolTaskRunner(max_workers=TRAIN_THREADS))
def train(
    profile: str = "full",
    variants: list[str] | None = None,
    seeds: list[int] | None = None,
    study: str | None = None,
    sweeps: dict[str, dict[str, list[Any]]] | None = None,
    protocol: str = "lecture",
    data_dir: str | None = None,
    tracking_uri: str | None = None,
    workdir: str | None = None,
    settings: dict[str, Any] | None = None,
) -> PipelineResult:
    """Train, evaluate, register and gate, as ``variants run`` with these options does."""
    config = run_config(profile, variants, seeds, study, sweeps, protocol, data_dir,
                        tracking_uri, workdir, settings)  # fmt: skip
    if runs_inline(config):
        return pipeline.fn(config)
    return run_pipeline(config)


@flow(name="inbox")
def inbox(
    inbox: str,
    model: str,
    profile: str = "full",
    variants: list[str] | None = None,
    seeds: list[int] | None = None,
    study: str | None = None,
    sweeps: dict[str, dict[str, list[Any]]] | None = None,
    protocol: str = "lecture",
    data_dir: str | None = None,
    tracking_uri: str | None = None,
    workdir: str | None = None,
    settings: dict[str, Any] | None = None,
) -> InboxResult:
    """Score what waits in ``inbox`` with ``model``'s champion."""
    config = run_config(profile, variants, seeds, study, sweeps, protocol, data_dir,
                        tracking_uri, workdir, settings)  # fmt: skip
    return score_inbox.fn(config, Path(inbox), model)
