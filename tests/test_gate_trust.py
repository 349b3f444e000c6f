"""What the gate trusts, on a real MLflow store under ``tmp_path`` with real served models
(untrained: only their answers count): its remembered answers only under their seal, and
a champion only with a reference profile, so that drift can always be checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from keras_variants.config.pipeline import PipelineConfig, build_config
from keras_variants.config.variants import VARIANTS
from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE, Dataset, load_dataset, split_rows
from keras_variants.errors import VariantsError
from keras_variants.lanes.call import call_here
from keras_variants.model.builders import build_model
from keras_variants.monitoring.stored import PROFILE_TAG
from keras_variants.registry import gate
from keras_variants.registry.gate_memo import answers_path, memo_tag, pack_correct, remembered
from keras_variants.registry.served_accuracy import ServedAccuracy, gate_inputs, score_and_profile
from keras_variants.registry.versions import REGISTERED_MODELS, files_record
from keras_variants.serving import saving
from keras_variants.tracking.store import client_for

NAME = REGISTERED_MODELS["imdb"]


class Store:
    """A new store with an empty ``imdb-sentiment``; :meth:`register` adds versions."""

    def __init__(self, root: Path, data_dir: Path) -> None:
        self.root, self.data_dir = root, data_dir
        self.config: PipelineConfig = build_config(profile="smoke", data_dir=data_dir, workdir=root)
        self.client: MlflowClient = client_for(self.config)
        self.client.create_registered_model(NAME)
        self.experiment = self.client.create_experiment("imdb")

    def register(self, seed: int) -> str:
        """An untrained IMDb model (weights from ``seed``) as a new version with its run and
        file hashes, as registration leaves it (no profile yet)."""
        folder = self.root / f"model-{seed}"
        variant = VARIANTS["imdb_dense"]
        saving.save_model(folder, variant, build_model(variant, seed=seed), "A fine film.",
                          self.data_dir / IMDB_WORD_INDEX_FILE, saving.requirements())  # fmt: skip
        run = self.client.create_run(self.experiment)
        source = folder.as_uri()
        tags = {"variant": "imdb_dense"} | files_record(self.client, source)
        made = self.client.create_model_version(NAME, source, run.info.run_id, tags=tags)
        return str(made.version)

    def gate(self, data: Dataset, version: str, **options) -> gate.Decision:
        return gate.gate(self.client, self.config, data, version=version, **options)

    def scorer(self, data: Dataset) -> ServedAccuracy:
        rows = split_rows(data, self.config.profile, self.config.seed)["test"]
        return ServedAccuracy(gate_inputs(data, rows))


@pytest.fixture
def store(tmp_path: Path, data_slices: Path) -> Store:
    return Store(tmp_path, data_slices)


@pytest.fixture(scope="module")
def imdb(data_slices: Path) -> Dataset:
    return load_dataset("imdb", data_slices)


def _alias(client: MlflowClient, alias: str) -> str | None:
    from keras_variants.registry.versions import alias_version

    return alias_version(client, NAME, alias)


def test_a_tampered_memo_is_not_used(store: Store, imdb: Dataset) -> None:
    """The champion's remembered answers, edited to 'right on every input' (by hand in the
    old unsealed form, or as bits under the old seal): the gate scores it again and
    compares the challenger with its real answers."""
    first = store.register(seed=1)
    assert store.gate(imdb, first).promoted  # first champion: profiled, answers remembered
    scorer = store.scorer(imdb)
    memo = memo_tag(scorer.key)
    version = store.client.get_model_version(NAME, first)
    seal = version.tags[memo]
    assert len(seal) == 32  # on the version the seal only; the answers are in its run
    real = remembered(store.client, NAME, first, scorer.key)
    assert real is not None and 0 < real.mean() < 1
    perfect = pack_correct(np.ones(real.size, bool))
    challenger = store.register(seed=2)

    def gated_on_real_answers(case: str) -> None:
        decision = store.gate(imdb, challenger, dry_run=True, significance=1.0)
        assert decision.champion_version == first
        assert decision.champion_accuracy == pytest.approx(real.mean()), case

    store.client.log_text(version.run_id, perfect, answers_path(scorer.key))
    gated_on_real_answers("the artifact edited, the seal kept")
    for tampered in (perfect, f"{perfect}:{seal}"):
        store.client.set_model_version_tag(NAME, first, memo, tampered)
        gated_on_real_answers(tampered)
    # A run that writes scores the champion again and leaves a sealed memo of its answers.
    store.gate(imdb, challenger, significance=1.0)
    again = remembered(store.client, NAME, first, scorer.key)
    assert again is not None and again.tolist() == real.tolist()


def test_a_memo_of_another_version_is_not_used(store: Store, imdb: Dataset) -> None:
    """A memo copied from one version onto another (other files) is not its evidence."""
    first, second = store.register(seed=1), store.register(seed=2)
    assert store.gate(imdb, first).promoted
    key = store.scorer(imdb).key
    copied = store.client.get_model_version(NAME, first).tags[memo_tag(key)]
    decision = store.gate(imdb, second, dry_run=True, significance=1.0)  # scored afresh
    store.client.set_model_version_tag(NAME, second, memo_tag(key), copied)
    again = store.gate(imdb, second, dry_run=True, significance=1.0)
    assert again.challenger_accuracy == decision.challenger_accuracy
    assert remembered(store.client, NAME, second, key) is None


def _lane_dies_while_profiling(function, *args):
    """A lane that runs everything but dies building a reference profile (out of memory,
    say): what the gate's ``call`` sees then."""
    if function is score_and_profile:
        raise MemoryError("the lane ran out of memory")
    return call_here(function, *args)


def test_a_version_whose_profile_failed_is_not_promoted(store: Store, imdb: Dataset) -> None:
    """Not as first champion, not forced; the decision is recorded on the version; the next
    gate run, with a lane that works, profiles it and promotes it."""
    version = store.register(seed=1)
    for force in (False, True):
        decision = store.gate(imdb, version, force=force, call=_lane_dies_while_profiling)
        assert not decision.promoted
        assert decision.reason == (
            "not monitored: building its reference profile failed (MemoryError: the lane ran "
            "out of memory); a version whose drift cannot be checked is never made champion"
        )
    assert _alias(store.client, "champion") is None
    tags = store.client.get_model_version(NAME, version).tags
    assert tags["promotion.decision"] == "rejected" and PROFILE_TAG not in tags
    assert store.gate(imdb, version).promoted
    assert PROFILE_TAG in store.client.get_model_version(NAME, version).tags


def test_a_version_whose_profile_cannot_be_stored_is_not_promoted(
    store: Store, imdb: Dataset
) -> None:
    """A real failure: the run that keeps the profile cannot take it (its artifact folder
    is a file); the version is not promoted, and says why."""
    version = store.register(seed=1)
    run_id = store.client.get_model_version(NAME, version).run_id
    artifacts = Path(store.client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    artifacts.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_text("not a folder")
    decision = store.gate(imdb, version)
    assert not decision.promoted
    assert decision.reason.startswith("not monitored: building its reference profile failed (")
    assert _alias(store.client, "champion") is None


def test_a_champion_whose_profile_is_gone_is_refused_by_promote_and_rollback(
    store: Store, imdb: Dataset
) -> None:
    """A version that lost its profile (or never had one) is not promoted by ``promote``
    (not even forced) and is not made champion again by a rollback."""
    first, second = store.register(seed=1), store.register(seed=2)
    assert store.gate(imdb, first).promoted
    assert store.gate(imdb, second, force=True).promoted
    assert _alias(store.client, "previous") == first
    store.client.delete_model_version_tag(NAME, first, PROFILE_TAG)
    with pytest.raises(VariantsError, match=rf"{NAME} v{first} \('previous'\) is not monitored"):
        gate.rollback(store.client, store.config.tracking_uri, NAME)
    assert _alias(store.client, "champion") == second
    scorer = store.scorer(imdb)
    decision = gate.promote(store.client, NAME, first, scorer, force=True)
    assert not decision.promoted
    assert decision.reason.startswith("not monitored: it has no reference profile")


@pytest.fixture
def unmonitored_champion(store: Store) -> Store:
    """A champion registered before profiles existed: no gate ran on it."""
    store.client.set_registered_model_alias(NAME, "champion", store.register(seed=1))
    return store


def test_fail_on_drift_fails_when_drift_could_not_be_checked(
    unmonitored_champion: Store, processes, tmp_path: Path
) -> None:
    from keras_variants.cli.score import DRIFT_EXIT_CODE
    from tests.helpers import BIN

    reviews = tmp_path / "reviews.txt"
    reviews.write_text("A wonderful film, I loved it.\nAwful, a waste of time.\n")
    command = [str(BIN / "variants"), "score", str(reviews), "--model", NAME,
               "--tracking-uri", unmonitored_champion.config.tracking_uri]  # fmt: skip
    done = processes.run(command, timeout=300)
    assert done.returncode == 0, done.stderr  # without --fail-on-drift: scored, and said so
    assert "drift not checked" in done.stdout
    done = processes.run([*command, "--fail-on-drift"], timeout=300)
    assert done.returncode == DRIFT_EXIT_CODE, done.stdout + done.stderr
    assert "2 rows scored" in done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: drift could not be checked: imdb-sentiment v1 has no ")
    assert "Traceback" not in done.stdout + done.stderr
