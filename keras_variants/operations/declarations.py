"""The project's deployments, declared once in ``prefect.yaml`` at the repository root: what
``prefect deploy`` puts on the work pool, and what ``variants schedule`` serves from one
process (:func:`declared`).

Each deployment's flow takes plain parameters, so that ``prefect deployment run
train/scheduled --param profile=smoke`` works: a run's options (:func:`run_config` turns them
into the typed config; :func:`run_parameters` is its inverse, for ``variants schedule``, whose
options are a config already). A data folder or tracking store not given falls back to
``VARIANTS_DATA_DIR`` and ``MLFLOW_TRACKING_URI`` of the worker's environment, as the
command line's options do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_variants.errors import ConfigError

if TYPE_CHECKING:
    from keras_variants.config.pipeline import PipelineConfig

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
TRAINING, SCORING, GUARD = "scheduled", "score-inbox", "guard-champion"
# The config's fields a run's parameters name on their own; the others go in "settings".
_NAMED = ("profile", "variants", "seeds", "sweeps", "protocol", "data_dir", "tracking_uri")
_DERIVED = ("artifact_root", "reports_dir")  # from workdir


@dataclass(frozen=True)
class Declared:
    """One deployment of prefect.yaml, as ``variants schedule`` serves it."""

    name: str
    entrypoint: str
    description: str
    concurrency: dict[str, Any]
    triggers: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


def declared(path: Path = PREFECT_YAML) -> dict[str, Declared]:
    """The deployments of ``path`` by name; one line when it is missing or malformed."""
    import yaml  # Prefect's own dependency

    if not path.is_file():
        raise ConfigError(
            f"{path}: the project's deployments are declared there and it is missing; "
            "reinstall the project from its repository (pip install -e .)"
        )
    try:
        deployments = yaml.safe_load(path.read_text())["deployments"]
        return {d["name"]: _declared(d) for d in deployments}
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a prefect.yaml with deployments ({exc})") from None


def _declared(deployment: dict[str, Any]) -> Declared:
    return Declared(
        name=deployment["name"],
        entrypoint=deployment["entrypoint"],
        description=" ".join(deployment.get("description", "").split()),
        concurrency=deployment.get("concurrency_limit") or {},
        triggers=deployment.get("triggers") or [],
        schedules=deployment.get("schedules") or [],
        parameters=deployment.get("parameters") or {},
    )


def run_config(
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
) -> PipelineConfig:
    """The typed config of a run's parameters: ``study`` first (its variants, seeds and
    sweeps), then each given one; ``settings`` any other field of the config."""
    from pydantic import ValidationError

    from keras_variants.config.pipeline import PROFILES, STUDIES, build_config

    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown {profile!r}; choose from {', '.join(PROFILES)}")
    overrides: dict[str, Any] = {"protocol": protocol}
    if study is not None:
        if study not in STUDIES:
            raise ConfigError(f"study: unknown {study!r}; choose from {', '.join(STUDIES)}")
        named = STUDIES[study]
        chosen = tuple(variants or named.variants)
        overrides |= {"variants": named.variants, "seeds": named.seeds}
        overrides["sweeps"] = {v: g for v, g in named.sweeps.items() if v in chosen}
    if variants:
        overrides["variants"] = tuple(variants)
    if seeds:
        overrides["seeds"] = tuple(seeds)
    if sweeps:
        overrides["sweeps"] = {v: {k: tuple(x) for k, x in g.items()} for v, g in sweeps.items()}
    overrides |= settings or {}
    try:
        return build_config(
            profile=profile,
            data_dir=Path(data_dir) if data_dir else _env_path("VARIANTS_DATA_DIR"),
            tracking_uri=tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None,
            workdir=Path(workdir) if workdir else None,
            **overrides,
        )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise ConfigError(f"{where}: {problem['msg']}") from None


def run_parameters(config: PipelineConfig) -> dict[str, Any]:
    """A run's parameters that :func:`run_config` turns back into ``config``."""
    dumped = config.model_dump(mode="json")
    defaults = type(config).model_fields
    settings = {
        key: value
        for key, value in dumped.items()
        if key not in (*_NAMED, *_DERIVED) and value != _default(defaults[key])
    }
    return {
        "profile": config.profile.name,
        "variants": list(config.variants),
        "seeds": list(config.seeds),
        "sweeps": dumped["sweeps"],
        "protocol": config.protocol,
        "data_dir": dumped["data_dir"],
        "tracking_uri": config.tracking_uri,
        "workdir": str(config.artifact_root.parent),
        "settings": settings,
    }


def _default(field_info: Any) -> Any:
    from pydantic_core import to_jsonable_python

    value = field_info.get_default(call_default_factory=True)
    return to_jsonable_python(value)


def _env_path(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value) if value else None
