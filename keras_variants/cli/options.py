"""What several commands share: their options, the typed config built from them (a value
it refuses is a usage error naming the option), the data folder's check, and the seeds,
variants and sweeps a study asks for. Imports Typer only; the rest inside the functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from keras_variants.config.pipeline import PipelineConfig

TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking store (default: sqlite mlflow.db in the current directory).",
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="VARIANTS_DATA_DIR",
        help="Folder with mnist.npz and imdb.npz in the Keras layout "
        "(default: Keras's download, which needs internet).",
        file_okay=False,
    ),
]
ProfileOption = Annotated[
    str, typer.Option("--profile", help="Named settings: 'full' (the lecture's) or 'smoke'.")
]
VariantsOption = Annotated[
    str | None,
    typer.Option("--variants", help="Comma-separated variant names (default: all six)."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed for weights, shuffling, splits.")]
SeedsOption = Annotated[
    str | None,
    typer.Option(
        "--seeds",
        help="Train every variant once per seed: a count (5 means seeds 0-4) or a list "
        "(0,3,7); or 'auto': seeds 0-4, then twice as many at each look (10, 20, 40) for "
        "the variants of the lecture claims still undecided, until all are decided or 40 "
        "seeds ('auto:N': N).",
    ),
]
ProtocolOption = Annotated[
    str,
    typer.Option(
        "--protocol",
        help="'lecture' (validation rows held out of the training data) or 'book' "
        "(train on all training rows, validate on the test rows, as the book's notebooks).",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Sweep a setting, e.g. imdb_dropout.dropout=0.2,0.5 (repeatable; every "
        "combination runs).",
    ),
]
StudyOption = Annotated[
    str | None,
    typer.Option(
        "--study", help="A named study: 'lecture' (its claims, 5 seeds, dropout 0.2/0.5)."
    ),
]
SignificanceOption = Annotated[
    float,
    typer.Option(
        "--significance",
        help="Largest p-value (McNemar's exact test on the same test inputs) at which a "
        "challenger counts as better than the champion; 1: any gain beyond --margin.",
    ),
]

# Config fields whose option is not simply "--" + the field name with dashes.
OPTION_OF_FIELD = {
    "promotion_margin": "--margin",
    "promotion_significance": "--significance",
    "sweeps": "--set",
}


def build(
    profile: str, data_dir: Path | None, tracking_uri: str | None, **overrides: object
) -> PipelineConfig:
    """The typed config; a value it refuses is a usage error naming the option (and a bad
    ``VARIANTS_MLFLOW_UI`` one line)."""
    from pydantic import ValidationError

    from keras_variants.config.pipeline import PROFILES, build_config

    if profile not in PROFILES:
        raise typer.BadParameter(
            f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}",
            param_hint="--profile",
        )
    from keras_variants.tracking.ui_links import mlflow_ui_for

    try:
        config = build_config(
            profile=profile, data_dir=data_dir, tracking_uri=tracking_uri, **overrides
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        option = OPTION_OF_FIELD.get(field, "--" + field.replace("_", "-"))
        message = error["msg"].removeprefix("Value error, ")
        raise typer.BadParameter(message, param_hint=option) from None
    mlflow_ui_for(config.tracking_uri)  # a bad VARIANTS_MLFLOW_UI stops here, not after a run
    return config


def data_source(ctx: typer.Context) -> str:
    """Where --data-dir's value came from, for messages about the folder."""
    source = ctx.get_parameter_source("data_dir")
    return "VARIANTS_DATA_DIR" if source and source.name == "ENVIRONMENT" else "--data-dir"


@dataclass(frozen=True)
class Selection:
    """What a pipeline run trains, as the commands that start one (``variants run``,
    ``variants schedule``) take it: the data, the profile, the store, the variants, seeds,
    sweeps, study and protocol. Declared once; :func:`with_selection` gives a command these
    options."""

    data_dir: DataDirOption = None
    profile: ProfileOption = "full"
    variants: VariantsOption = None
    tracking_uri: TrackingOption = None
    seed: SeedOption = 0
    seeds: SeedsOption = None
    sweep: SetOption = None
    study: StudyOption = None
    protocol: ProtocolOption = "lecture"

    def config(self, **overrides: object) -> PipelineConfig:
        """The typed config of this selection and the command's own ``overrides``."""
        chosen = study_overrides(self.variants, self.seed, self.seeds, self.sweep, self.study)
        chosen["protocol"] = self.protocol
        return build(self.profile, self.data_dir, self.tracking_uri, **chosen, **overrides)


def with_selection(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with :class:`Selection`'s options in place of its ``selection``
    parameter: Typer sees its options, the command gets one typed value."""
    hints = inspect.get_annotations(Selection, eval_str=True)
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                          annotation=hints[f.name])
        for f in fields(Selection)
    ]  # fmt: skip

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        selection = Selection(**{f.name: kwargs.pop(f.name) for f in fields(Selection)})
        return command(*args, selection=selection, **kwargs)

    parameters = []  # the shared options where ``selection`` was
    for p in inspect.signature(command, eval_str=True).parameters.values():
        is_selection = p.name == "selection"
        parameters += shared if is_selection else [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def check_data(ctx: typer.Context, config: PipelineConfig, served: bool = True) -> None:
    """The data folder holds what the selected variants need (and the word index, when a
    served IMDb model is built), or one line saying what is missing and what to do."""
    from keras_variants.cli.preflight import check_data_dir

    typed = ctx.params.get("data_dir")  # as the user wrote it, for messages
    check_data_dir(config.data_dir, config.selected(), data_source(ctx), served, typed)


def check_model_choice(model: str, alias: str | None, version: str | None) -> None:
    """A known registered model, and an alias or a version, not both: a usage error otherwise."""
    from keras_variants.registry.versions import REGISTERED_MODELS

    if model not in REGISTERED_MODELS.values():
        raise typer.BadParameter(
            f"unknown model {model!r}; choose from {', '.join(REGISTERED_MODELS.values())}",
            param_hint="--model",
        )
    if alias is not None and version is not None:
        raise typer.BadParameter("pass --alias or --version, not both", param_hint="--version")


def study_overrides(
    variants: str | None,
    seed: int,
    seeds: str | None,
    sweeps: list[str] | None,
    study: str | None,
) -> dict[str, object]:
    """Seeds, variants and sweeps from --seed/--seeds, --variants, --set and --study: a
    named study's settings, each replaced by the options given with it."""
    from keras_variants.config.pipeline import STUDIES
    from keras_variants.errors import ConfigError
    from keras_variants.studies.study import parse_seed_plan, parse_seeds, parse_sweeps

    overrides = _variant_overrides(variants, seed)
    try:
        if study is not None:
            if study not in STUDIES:
                raise typer.BadParameter(
                    f"unknown study {study!r}; choose from {', '.join(STUDIES)}",
                    param_hint="--study",
                )
            named = STUDIES[study]
            overrides = {"seed": named.seeds[0], "variants": named.variants} | overrides
            selected = overrides["variants"]
            overrides["seeds"] = named.seeds
            overrides["sweeps"] = {v: grid for v, grid in named.sweeps.items() if v in selected}
            del overrides["seed"]
        if seeds is not None:
            overrides.pop("seed", None)
            plan = parse_seed_plan(seeds)
            overrides["seeds"] = tuple(range(plan.first)) if plan else parse_seeds(seeds)
            if plan is not None:
                overrides["seed_plan"] = plan
        if sweeps:
            overrides["sweeps"] = dict(overrides.get("sweeps", {})) | parse_sweeps(sweeps)
    except ConfigError as exc:
        option = "--seeds" if str(exc).startswith("--seeds") else "--set"
        raise typer.BadParameter(str(exc).split(": ", 1)[1], param_hint=option) from None
    return overrides


def _variant_overrides(variants: str | None, seed: int) -> dict[str, object]:
    overrides: dict[str, object] = {"seed": seed}
    if variants:
        overrides["variants"] = tuple(v.strip() for v in variants.split(",") if v.strip())
    return overrides
