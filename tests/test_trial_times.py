"""The progress line's expected times: read back from a real MLflow store's earlier runs."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from keras_variants.tracking.records import trial_seconds
from keras_variants.tracking.trial_key import REUSED_FROM_TAG


def test_a_trials_time_is_the_median_duration_of_its_recent_trained_runs(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("imdb", artifact_location=(tmp_path / "a").as_uri())

    clock = iter(range(1_000_000, 10**9, 1_000_000))  # run start times, ms, in order

    def run(label: str, seconds: float, profile: str = "full", **tags: str) -> None:
        start = next(clock)
        made = client.create_run(
            experiment, start, tags={"label": label, "profile": profile, **tags}
        )
        client.set_terminated(made.info.run_id, end_time=start + int(seconds * 1000))

    for seconds in (10.0, 30.0, 20.0):
        run("imdb_dense", seconds)
    run("imdb_dense", 99.0, **{REUSED_FROM_TAG: "earlier"})  # a copy, not a measurement
    run("imdb_dense", 1.0, profile="smoke")  # another profile
    for seconds in (1.0, 1.0, 1.0, 50.0, 50.0, 50.0, 50.0, 50.0):  # only the last five count
        run("imdb_l2 l2:0.01", seconds)
    client.create_run(experiment, tags={"label": "imdb_reduced", "profile": "full"})  # running

    assert trial_seconds(client, ["imdb", "mnist"], "full") == {
        "imdb_dense": 20.0,
        "imdb_l2 l2:0.01": 50.0,
    }
    assert trial_seconds(client, ["mnist"], "full") == {}
