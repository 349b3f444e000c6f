"""Unchanged reruns reuse earlier results; any changed input retrains what it touches."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from keras_variants.config.pipeline import PROFILES, build_config
from keras_variants.config.variants import VARIANTS
from keras_variants.tracking.store import client_for
from keras_variants.tracking.trial_key import REUSED_FROM_TAG, trial_key
from tests.conftest import rewrite_npz

FINGERPRINTS = {"imdb.npz": "a" * 64, "imdb_word_index.json": "b" * 64}


def _key(**changes) -> str:
    arguments = {
        "variant": VARIANTS["imdb_l2"],
        "seed": 0,
        "profile": PROFILES["smoke"],
        "fingerprints": FINGERPRINTS,
        "code": "1" * 64,
    } | changes
    return trial_key(**arguments)


def test_the_trial_key_changes_with_every_input() -> None:
    key = _key()
    assert key == _key()  # deterministic
    assert _key(variant=VARIANTS["imdb_l2"].model_copy(update={"l2": 0.01})) != key
    assert _key(seed=1) != key
    assert _key(profile=PROFILES["full"]) != key
    assert _key(fingerprints=FINGERPRINTS | {"imdb.npz": "c" * 64}) != key
    assert _key(code="0" * 64) != key
    assert _key(settings={"precision": "mixed_bfloat16"}) != key


def test_a_rerun_reuses_and_changed_inputs_retrain(prefect_server, data_slices, tmp_path):
    from flows.pipeline import pipeline

    data = Path(shutil.copytree(data_slices, tmp_path / "data"))
    config = build_config(
        profile="smoke", data_dir=data, workdir=tmp_path, variants=("imdb_dense", "mnist_dense")
    )
    client = client_for(config)
    first = pipeline(config)
    versions = {d.model: d.version for d in first.decisions}

    again = pipeline(config)
    for name, outcome in again.variants.items():
        run = client.get_run(outcome.run_id)
        earlier = first.variants[name]
        assert run.data.tags[REUSED_FROM_TAG] == earlier.run_id
        assert outcome.test_metrics == earlier.test_metrics
        assert run.data.metrics == client.get_run(earlier.run_id).data.metrics
        history = client.get_metric_history(outcome.run_id, "val/loss")
        assert [m.step for m in history] == [1, 2]
    for decision in again.decisions:
        assert not decision.promoted and decision.version == versions[decision.model]
        assert (
            decision.reason
            == f"identical to v{decision.version} (the champion); nothing registered"
        )
    for model in versions:
        assert len(client.search_model_versions(f"name = '{model}'")) == 1  # no duplicate
    page = again.report.read_text()  # the report still shows every variant's results
    assert "<td>imdb_dense</td>" in page and "<td>mnist_dense</td>" in page
    # Its registry decisions are this run's own, as the terminal printed them, not the
    # first run's, whose report still has its own.
    decisions = page.split("<h2>Champions</h2>")[1].split("</ul>")[0]
    decided = re.findall(r"<li>([^<]*)</li>", decisions)
    assert sorted(decided) == sorted(
        f"{model} v{version}: not promoted: identical to v{version} (the champion); "
        "nothing registered"
        for model, version in versions.items()
    )
    first_decisions = first.report.read_text().split("<h2>Champions</h2>")[1].split("</ul>")[0]
    for model, version in versions.items():
        assert f"<li>{model} v{version}: promoted to champion: first champion (" in first_decisions

    forced = pipeline(config.model_copy(update={"force": True, "variants": ("imdb_dense",)}))
    assert REUSED_FROM_TAG not in client.get_run(forced.variants["imdb_dense"].run_id).data.tags

    other_seed = pipeline(
        config.model_copy(update={"seeds": (1,), "promote": False, "variants": ("mnist_dense",)})
    )
    (outcome,) = other_seed.outcomes
    assert REUSED_FROM_TAG not in client.get_run(outcome.run_id).data.tags

    with np.load(data / "mnist.npz") as mnist:
        images = mnist["x_test"].copy()
    images[0] = 255 - images[0]  # one test image changed: MNIST retrains, IMDb does not
    rewrite_npz(data / "mnist.npz", x_test=images)
    changed = pipeline(config.model_copy(update={"promote": False}))
    tags = {name: client.get_run(o.run_id).data.tags for name, o in changed.variants.items()}
    assert REUSED_FROM_TAG not in tags["mnist_dense"]
    latest = forced.variants["imdb_dense"].run_id  # the latest training with that key
    assert tags["imdb_dense"][REUSED_FROM_TAG] == latest
