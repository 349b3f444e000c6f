"""prefect.yaml, the one declaration of the project's deployments: Prefect reads it, each
entrypoint is a flow taking the declared parameters, its triggers name the project's own
events, ``variants schedule`` builds its deployments from it, a run's options survive the
trip through plain parameters, and the crash recovery's automations act on the runs they
should, by Prefect's own matcher."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from keras_variants.errors import ConfigError
from keras_variants.operations import declarations, events, recovery
from keras_variants.operations.declarations import (
    GUARD,
    SCORING,
    TRAINING,
    declared,
    run_config,
    run_parameters,
)

REPO = Path(__file__).resolve().parents[1]


def test_prefect_reads_the_declaration_and_every_entrypoint_is_a_flow_with_its_parameters():
    import yaml
    from prefect.flows import load_flow_from_entrypoint

    from keras_variants import compat

    assert declarations.PREFECT_YAML == REPO / "prefect.yaml"
    raw = yaml.safe_load(declarations.PREFECT_YAML.read_text())
    compat.check_prefect_yaml(raw)  # as prefect deploy reads it
    deployments = declared()
    assert set(deployments) == {TRAINING, SCORING, GUARD}
    for deployment in deployments.values():
        flow = load_flow_from_entrypoint(str(REPO / deployment.entrypoint))
        accepted = set(flow.parameters.properties)
        given = set(deployment.parameters)
        for trigger in deployment.triggers:
            given |= set(trigger.get("parameters") or {})
        assert given <= accepted, (deployment.name, given - accepted)
        assert deployment.concurrency == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert {d["work_pool"]["name"] for d in raw["deployments"]} == {recovery.POOL}
    step = raw["build"][0]["keras_variants.operations.recovery.install"]
    assert step["pool"] == recovery.POOL
    for deployment in raw["deployments"]:  # each beats, and is watched for silence
        env = deployment["work_pool"]["job_variables"]["env"]
        assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) == recovery.HEARTBEAT_S
        assert deployment["tags"] == [recovery.TAG]


def test_the_declared_triggers_expect_the_events_the_project_sends() -> None:
    expected = {
        TRAINING: events.DATA_CHANGED,
        SCORING: events.INBOX_WAITING,
        GUARD: events.CHAMPION_MOVED,
    }
    for name, deployment in declared().items():
        assert [t["expect"] for t in deployment.triggers] == [[expected[name]]]


def test_variants_schedule_builds_its_deployments_from_the_declaration(tmp_path: Path) -> None:
    """Its own name, timer and folders; the declared flow, concurrency and triggers."""
    from flows.deployed import inbox, train
    from flows.guard import guard_champion
    from keras_variants.config.pipeline import build_config
    from keras_variants.operations import deployments

    config = build_config(profile="smoke", data_dir=tmp_path, workdir=tmp_path)
    parameters = run_parameters(config)
    made = deployments.training(train, declared()[TRAINING], "nightly", parameters,
                                "0 4 * * *", tmp_path)  # fmt: skip
    assert made.name == "nightly" and made.concurrency_limit == 1
    assert made.concurrency_options.collision_strategy.value == "ENQUEUE"
    (trigger,) = made.triggers
    assert trigger.name == "nightly: data changed"
    assert trigger.match.root["prefect.resource.id"] == events.folder_resource("data", tmp_path)
    folder = tmp_path / "inbox"
    made = deployments.scoring(inbox, declared()[SCORING], "score-imdb-sentiment",
                               {"inbox": str(folder), "model": "imdb-sentiment", **parameters},
                               folder)  # fmt: skip
    (trigger,) = made.triggers
    assert trigger.name == "score-imdb-sentiment: files waiting"
    assert trigger.match.root["prefect.resource.id"] == events.folder_resource("inbox", folder)
    assert trigger.parameters == {"inbox": "{{ event.resource.path }}",
                                  "model": "{{ event.payload.model }}"}  # fmt: skip
    made = deployments.guard(guard_champion, declared()[GUARD], parameters, "")
    (trigger,) = made.triggers
    assert trigger.parameters == {"model": "{{ event.payload.model }}",
                                  "version": "{{ event.payload.version }}"}  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"profile": "smoke", "variants": ("mnist_dense",), "seeds": (3, 4)},
        {"profile": "smoke", "protocol": "book"},
        {"profile": "smoke", "sweeps": {"imdb_dense": {"dropout": (0.1, 0.3)}}},
        {"profile": "smoke", "max_parallel": 3, "runner": "threads", "force": True},
        {"promotion_margin": 0.01, "promotion_significance": 1.0, "promote": False},
    ],
)
def test_a_runs_options_survive_the_trip_through_plain_parameters(options, tmp_path) -> None:
    import json

    from keras_variants.config.pipeline import build_config

    profile = options.pop("profile", "full")
    config = build_config(profile=profile, data_dir=tmp_path, workdir=tmp_path / "w",
                          tracking_uri="http://127.0.0.1:5000", **options)  # fmt: skip
    parameters = json.loads(json.dumps(run_parameters(config)))  # as the server keeps them
    assert run_config(**parameters) == config


def test_plain_parameters_make_the_config_as_the_command_line_would(monkeypatch, tmp_path):
    from keras_variants.config.pipeline import STUDIES

    monkeypatch.setenv("VARIANTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    config = run_config("smoke", workdir=str(tmp_path))
    assert (config.profile.name, config.data_dir, config.tracking_uri) == (
        "smoke", tmp_path.resolve(), "http://127.0.0.1:5999")  # fmt: skip
    study = run_config("smoke", study="lecture", variants=["mnist_dense"])
    assert study.variants == ("mnist_dense",) and study.seeds == STUDIES["lecture"].seeds


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"profile": "huge"}, "profile: unknown 'huge'"),
        ({"study": "nope"}, "study: unknown 'nope'"),
        ({"variants": ["imdb_foo"]}, "variants"),
        ({"settings": {"max_parallel": 0}}, "max_parallel"),
    ],
)
def test_a_bad_parameter_is_one_line_naming_it(options, says) -> None:
    with pytest.raises(ConfigError) as raised:
        run_config(**options)
    assert says in str(raised.value) and "\n" not in str(raised.value)


def _event(
    name: str, run_count: str = "1", pool: str | None = recovery.POOL, tag: str = recovery.TAG
):
    from prefect.server.events.schemas.events import ReceivedEvent

    related = [{"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}]
    if pool is not None:
        work_pool = {"prefect.resource.id": f"prefect.work-pool.{uuid4()}"}
        related.append(work_pool | {"prefect.resource.role": "work-pool",
                                    "prefect.resource.name": pool})  # fmt: skip
    return ReceivedEvent(
        occurred=datetime.now(UTC), event=name, id=uuid4(),
        resource={"prefect.resource.id": f"prefect.flow-run.{uuid4()}",
                  "prefect.run-count": run_count},
        related=related,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("event", "retried"),
    [
        (_event("prefect.flow-run.Crashed"), True),  # its first attempt crashed
        (_event("prefect.flow-run.Crashed", run_count="2"), False),  # retried once already
        (_event("prefect.flow-run.Crashed", pool="another-pool"), False),
        (_event("prefect.flow-run.Crashed", pool=None), False),  # a served or sub- flow run
        (_event("prefect.flow-run.Failed"), False),  # the flow's own retries decide
    ],
)
def test_a_crashed_run_of_the_pool_is_retried_once(event, retried) -> None:
    """By the Prefect server's own trigger matching."""
    from prefect.server.events.schemas.automations import Automation

    silent, retry = (Automation.model_validate(spec | {"enabled": True})
                     for spec in recovery.automations())  # fmt: skip
    assert retry.trigger.covers(event) is retried
    assert silent.trigger.posture.value == "Proactive"
    assert silent.trigger.within.total_seconds() == recovery.SILENT_S
    assert retry.actions[0].force and retry.actions[0].state.value == "SCHEDULED"


@pytest.mark.parametrize(
    ("event", "watched"),
    [
        (_event("prefect.flow-run.heartbeat", pool=None), True),  # heartbeats carry no pool
        (_event("prefect.flow-run.Completed"), True),  # ends the watch
        (_event("prefect.flow-run.heartbeat", tag="other"), False),  # beats every 180 s
        (_event("prefect.task-run.heartbeat"), False),
    ],
)
def test_only_the_tagged_runs_heartbeats_are_watched(event, watched) -> None:
    """A run that is not prefect.yaml's (``variants schedule``'s, anyone's) is never set
    Crashed for the silence between Prefect's default heartbeats."""
    from prefect.server.events.schemas.automations import Automation

    silent, _ = (Automation.model_validate(spec | {"enabled": True})
                 for spec in recovery.automations())  # fmt: skip
    assert silent.trigger.covers(event) is watched


@pytest.mark.parametrize(
    ("settings", "inline"),
    [
        ({}, True),  # threads and lanes, two trainings at once: the deployment's own run
        ({"runner": "threads"}, True),
        ({"max_parallel": 3}, False),  # another thread pool: the pipeline as a subflow
        ({"runner": "dask"}, False),
    ],
)
def test_a_training_run_holds_the_pipelines_tasks_unless_it_asks_for_another_runner(
    settings, inline
) -> None:
    from flows.deployed import runs_inline

    assert runs_inline(run_config("smoke", settings=settings)) is inline


def test_every_deployed_flow_takes_a_runs_options_as_run_config_does() -> None:
    """The same names and defaults in each flow's signature: a parameter added to one and
    not to the others, or a default that drifts, fails here."""
    import inspect

    from flows.deployed import inbox, train
    from flows.guard import guard_champion

    options = inspect.signature(run_config).parameters
    for flow, own in ((train, []), (inbox, ["inbox", "model"]),
                      (guard_champion, ["model", "version"])):  # fmt: skip
        parameters = inspect.signature(flow.fn).parameters
        assert list(parameters) == [*own, *options], flow.name
        for name, option in options.items():
            assert parameters[name].default == option.default, (flow.name, name)
