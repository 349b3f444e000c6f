"""``variants score``: each input kind read into rows and rejected rows, each bad input as
one clear error, batches through a real served model, and the command end to end on the
smoke run's registered champions (files, MLflow run, a failure leaving its run FAILED)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_variants.errors import InputError
from keras_variants.scoring import batch, outputs
from keras_variants.scoring.drift import not_checked
from keras_variants.scoring.inputs import check_input, read_input
from tests.helpers import Processes, declared_png

REVIEWS = ["A wonderful film, I loved every minute.", "Dull, slow and far too long."]


def _digits(folder: Path, count: int, data_slices: Path) -> list[int]:
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(data_slices / "mnist.npz") as mnist:
        images, labels = mnist["x_test"][:count], mnist["y_test"][:count]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"digit-{i:03d}.png")
    return labels.tolist()


# --- reading each input kind ---------------------------------------------------------------


def test_a_text_file_is_one_review_per_line(tmp_path: Path) -> None:
    path = tmp_path / "reviews.txt"
    # A review may hold a separator other than "\n" (here U+2028): it stays one row.
    path.write_text(f"{REVIEWS[0]}\n\n{REVIEWS[1]}\u2028still the same review\n")
    read = read_input(path, "imdb", "imdb-sentiment")
    assert read.kind == "text" and read.ids == ["1", "3"]
    assert read.inputs == [REVIEWS[0], f"{REVIEWS[1]}\u2028still the same review"]
    assert [(r.id, r.reason) for r in read.rejected] == [("2", "the text is empty")]
    assert read.labels is None and len(read.sha256) == 64


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_of_reviews_with_ids_and_labels(tmp_path: Path, suffix: str) -> None:
    frame = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": [REVIEWS[0], "", REVIEWS[1], REVIEWS[0]],
            "label": ["positive", "1", "0", "maybe"],
        }
    )
    path = tmp_path / f"reviews{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    read = read_input(path, "imdb", "imdb-sentiment")
    assert read.ids == ["a", "c"] and read.labels == [1, 0]
    assert {r.id: r.reason for r in read.rejected} == {
        "b": "the text is empty",
        "d": "the label is not 0, 1, negative or positive",
    }


def test_a_folder_of_images_rejects_what_is_not_one(tmp_path: Path, data_slices: Path) -> None:
    _digits(tmp_path / "digits", 3, data_slices)
    (tmp_path / "digits" / "notes.txt").write_text("not an image")
    (tmp_path / "digits" / ".hidden.png").write_bytes(b"skipped")
    # ~60 bytes that declare 20000x20000 pixels (Pillow's own bomb error) and 5000x5000
    (tmp_path / "digits" / "bomb.png").write_bytes(declared_png(20_000, 20_000))
    (tmp_path / "digits" / "large.png").write_bytes(declared_png(5_000, 5_000))
    read = read_input(tmp_path / "digits", "mnist", "mnist-classifier")
    assert read.ids == ["digit-000.png", "digit-001.png", "digit-002.png"]
    too_large = "pixels, over the limit of 4096x4096; send a smaller image"
    assert [(r.id, r.reason) for r in read.rejected] == [
        ("bomb.png", f"the image is more than 4096x4096 {too_large}"),
        ("large.png", f"the image is 5000x5000 {too_large}"),
        ("notes.txt", "not an image Pillow can read (PNG, JPEG, ...)"),
    ]
    png = (tmp_path / "digits" / "digit-001.png").read_bytes()
    assert read.inputs[1] == __import__("base64").b64encode(png).decode()


def test_a_table_of_image_paths_relative_to_it(tmp_path: Path, data_slices: Path) -> None:
    labels = _digits(tmp_path / "images", 2, data_slices)
    table = pd.DataFrame(
        {
            "image": ["images/digit-000.png", "images/digit-001.png", "images/gone.png"],
            "label": [labels[0], labels[1], 3],
        }
    )
    table.to_csv(tmp_path / "digits.csv", index=False)
    read = read_input(tmp_path / "digits.csv", "mnist", "mnist-classifier")
    assert read.ids == ["images/digit-000.png", "images/digit-001.png"]
    assert read.labels == labels[:2]
    assert [(r.id, r.reason) for r in read.rejected] == [("images/gone.png", "no such file")]


BAD_INPUTS = [
    ("empty", "mnist", "empty: the folder has no files; put the images to score in it"),
    ("notimages", "mnist", "none of its 1 files is an image Pillow can read"),
    ("columns.csv", "imdb", "no 'text' or 'image' column (its columns: review, stars)"),
    ("digits", "imdb", "holds images, and imdb-sentiment scores review texts"),
    ("reviews.txt", "mnist", "holds review texts, and mnist-classifier scores digit images"),
    ("table.xlsx", "imdb", "cannot score a .xlsx file; pass a folder of images, or a .txt"),
    ("missing.txt", "imdb", "missing.txt: no such file or folder"),
    ("blank.txt", "imdb", "no row can be scored (2 rejected; the first, 1: the text is empty)"),
    ("latin1.txt", "imdb", "line 2 is not UTF-8 text; save the file as UTF-8"),
    ("broken.parquet", "imdb", "cannot read it as Parquet"),
]


@pytest.mark.parametrize(("name", "dataset", "message"), BAD_INPUTS)
def test_each_bad_input_is_one_clear_error(
    tmp_path: Path, data_slices: Path, name: str, dataset: str, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notimages").mkdir()
    (tmp_path / "notimages" / "a.txt").write_text("hello")
    (tmp_path / "columns.csv").write_text("review,stars\ngood,5\n")
    _digits(tmp_path / "digits", 1, data_slices)
    (tmp_path / "reviews.txt").write_text(REVIEWS[0] + "\n")
    (tmp_path / "table.xlsx").write_bytes(b"PK")
    (tmp_path / "blank.txt").write_text("  \n\t\n")
    (tmp_path / "latin1.txt").write_bytes("fine\nna\xefve\n".encode("latin-1"))
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    model = {"imdb": "imdb-sentiment", "mnist": "mnist-classifier"}[dataset]
    with pytest.raises(InputError) as raised:
        read_input(tmp_path / name, dataset, model)
    assert message in str(raised.value)
    assert "Traceback" not in str(raised.value) and "hello" not in str(raised.value)


def test_the_quick_check_needs_no_full_read(tmp_path: Path) -> None:
    path = tmp_path / "both.csv"
    path.write_text("text,image,label\ngood film,a.png,1\n")
    assert check_input(path, "imdb", "imdb-sentiment") == "text"
    assert check_input(path, "mnist", "mnist-classifier") == "image"


# --- pure rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("input 0: the bytes are not an image Pillow can read", "the bytes are not an image"),
        ("input 0 has no word the model knows; send", "the input has no word the model knows"),
        ("input 0 is an empty string; send a review text", "the input is an empty string"),
    ],
)
def test_a_served_refusal_becomes_the_rows_reason(message: str, reason: str) -> None:
    assert batch.row_reason(message).startswith(reason)


@pytest.mark.parametrize(
    ("summary", "line"),
    [
        (
            {"rows": 25_000, "rejected": 3, "drift": not_checked("no reference profile")},
            "25,000 rows scored, 3 rejected; drift not checked: no reference profile",
        ),
        (
            {
                "rows": 500, "rejected": 0, "estimated_accuracy": 0.8712,
                "estimated_accuracy_interval": [0.8149, 0.8951], "accuracy": 0.88,
                "estimate": {"level": 0.9, "checked_on_shifts_up_to": "rotated 60°"},
                "labelled_rows": 500,
                "drift": {"checked": True, "detected": False, "signals": []},
            },  # the bounds are rounded outwards
            "500 rows scored, 0 rejected; estimated accuracy 0.87 (0.81-0.90, 90%; checked on "
            "shifts up to rotated 60°) (measured on 500 labels: 0.880); no drift",
        ),
        (
            {
                "rows": 2, "rejected": 0, "estimated_accuracy": None,
                "estimate_withheld": "fewer than 50 rows, too few",
                "drift": {"checked": True, "detected": False, "signals": []},
            },
            "2 rows scored, 0 rejected; accuracy: not estimated (fewer than 50 rows, too few); "
            "no drift",
        ),
        (
            {
                "rows": 500, "rejected": 0, "accuracy": 0.5, "labelled_rows": 10,
                "drift": {"checked": True, "detected": True, "signals": [
                    {"name": "review length", "drifted": True},
                    {"name": "predicted classes", "drifted": False},
                    {"name": "confidence", "drifted": True},
                ]},
            },
            "500 rows scored, 0 rejected; accuracy 0.500 on 10 labelled rows; drift "
            "detected: review length, confidence",
        ),
    ],
)  # fmt: skip
def test_summary_line(summary: dict, line: str) -> None:
    assert outputs.summary_line(summary) == line


def test_a_destination_in_use_is_refused_and_a_failed_write_leaves_nothing(
    tmp_path: Path,
) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="the folder exists and is not empty"):
        outputs.check_destination(tmp_path / "used")
    destination = tmp_path / "new"
    with pytest.raises(RuntimeError), outputs.staged(destination) as staging:
        (staging / "predictions.csv").write_text("half")
        raise RuntimeError("disk gone")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]  # no staging, no folder
    with outputs.staged(destination) as staging:
        (staging / "summary.json").write_text("{}")
    assert [p.name for p in destination.iterdir()] == ["summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "used"]


# --- batches through a real served model ---------------------------------------------------


@pytest.fixture(scope="module")
def served_imdb(tmp_path_factory: pytest.TempPathFactory, data_slices: Path):
    from keras_variants.config.variants import VARIANTS
    from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE
    from keras_variants.model.builders import build_model
    from keras_variants.serving import saving

    folder = tmp_path_factory.mktemp("served") / "imdb"
    variant = VARIANTS["imdb_dense"]
    saving.save_model(folder, variant, build_model(variant, seed=1), "A fine film.",
                      data_slices / IMDB_WORD_INDEX_FILE, saving.requirements())  # fmt: skip
    return saving.load_served(str(folder))


def test_a_refused_row_is_rejected_and_the_rest_scored(served_imdb, data_slices: Path) -> None:
    texts = (
        pd.read_parquet(data_slices / "imdb_reviews.parquet").query("split == 'test'")["text"]
    ).tolist()[:40]
    sent = [*texts[:17], "qqqzzx vvbbnn", *texts[17:], "zzzq"]
    ids = [f"r{i}" for i in range(len(sent))]
    seen: list[tuple[int, int]] = []
    scored = batch.score_rows(
        served_imdb, ids, sent, progress=lambda d, t: seen.append((d, t)), request_rows=8
    )
    assert [(r.id, r.reason) for r in scored.rejected] == [
        ("r17", "the input has no word the model knows; send the text of a review in English"),
        ("r41", "the input has no word the model knows; send the text of a review in English"),
    ]
    assert scored.predictions["id"].tolist() == [i for i in ids if i not in ("r17", "r41")]
    assert scored.sent == texts
    whole = served_imdb.predict(texts)  # the same answers as one request of the good rows
    np.testing.assert_allclose(
        scored.predictions["probability"], [a.probability for a in whole], atol=1e-6
    )
    assert scored.predictions["label"].tolist() == [a.label for a in whole]
    assert seen[-1] == (42, 42) and len(seen) == 6


def test_accuracy_counts_labelled_rows_only() -> None:
    frame = pd.DataFrame(
        {"label": ["positive", "negative", "positive", "negative"], "probability": 0.5}
    )
    assert batch.accuracy(batch.Scored("imdb", frame, [], [1, 1, None, 0])) == (2 / 3, 3)
    assert np.isnan(batch.accuracy(batch.Scored("imdb", frame, [], None))[0])
    digits = pd.DataFrame({"digit": [3, 7], "probability": 0.9})
    assert batch.accuracy(batch.Scored("mnist", digits, [], [3, 1])) == (0.5, 2)


# --- the command, end to end ----------------------------------------------------------------


def _variants(config, *args: str, processes: Processes) -> subprocess.CompletedProcess[str]:
    """``variants score`` in this session's environment (its Prefect home), as before."""
    return processes.run(
        [str(Path(sys.executable).parent / "variants"), "score", *args,
         "--tracking-uri", config.tracking_uri],
        env=dict(os.environ),
    )  # fmt: skip


def test_variants_score_reviews_and_digits_end_to_end(
    smoke_run, smoke_config, data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    from keras_variants.tracking.store import client_for

    reviews = pd.read_parquet(data_slices / "imdb_reviews.parquet").query("split == 'test'")
    table = reviews[["text", "label"]].iloc[:60].reset_index(drop=True)
    table.loc[5, "text"] = "   "
    table.to_csv(tmp_path / "reviews.csv", index=False)
    # Drift is the next test's subject: whatever it finds here, the scoring exits 0.
    done = _variants(smoke_config, "reviews.csv", "--model", "imdb-sentiment", processes=processes)
    assert done.returncode == 0, done.stderr
    line, files = done.stdout.strip().splitlines()
    summary = json.loads((tmp_path / "scores" / files.split("MLflow run ")[1].rstrip(")")
                          / "summary.json").read_text())  # fmt: skip
    interval = summary["estimated_accuracy_interval"]
    if summary["estimated_accuracy"] is None:  # the smoke champion may not reach that far
        assert interval is None and summary["estimate_withheld"]
        assert f"accuracy: not estimated ({summary['estimate_withheld']})" in line
    else:
        assert interval[0] <= summary["estimated_accuracy"] <= interval[1]
        assert line.startswith("59 rows scored, 1 rejected; estimated accuracy ")
        assert f"{math.floor(interval[0] * 100) / 100:.2f}-" in line and "90%" in line
    assert "(measured on 59 labels: " in line  # the champion has a reference profile
    assert "drift" in line and "Traceback" not in done.stderr
    run_id = files.split("MLflow run ")[1].rstrip(")")
    folder = tmp_path / "scores" / run_id
    assert sorted(p.name for p in folder.iterdir()) == sorted(outputs.FILES)
    predictions = pd.read_parquet(folder / "predictions.parquet")
    assert predictions.columns.tolist() == ["id", "label", "probability", "entropy"]
    assert predictions["id"].tolist() == [str(i) for i in range(1, 61) if i != 6]
    assert pd.read_csv(folder / "rejected.csv").values.tolist() == [[6, "the text is empty"]]
    summary = json.loads((folder / "summary.json").read_text())
    truth = table["label"].drop(index=5).to_numpy()
    measured = ((predictions["label"] == "positive").to_numpy() == truth).mean()
    assert summary["accuracy"] == pytest.approx(measured) and summary["labelled_rows"] == 59
    assert summary["model"]["name"] == "imdb-sentiment" and summary["rows"] == 59

    client = client_for(smoke_config)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["keras_variants.kind"] == "scoring"
    experiment = client.get_experiment(run.info.experiment_id).name
    assert experiment == "imdb-sentiment scoring"  # the model's scoring history
    version = client.get_model_version("imdb-sentiment", summary["model"]["version"])
    assert run.data.params["model.version"] == str(version.version)
    assert run.data.params["model.id"] == summary["model"]["model_id"]
    assert run.data.params["input.sha256"] == summary["input"]["sha256"]
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == summary["input"]["sha256"][:32]
    assert [m.model_id for m in run.inputs.model_inputs] == [summary["model"]["model_id"]]
    assert run.data.metrics["rows"] == 59 and run.data.metrics["rows_rejected"] == 1
    logged = client.get_logged_model(summary["model"]["model_id"])  # the model's own page
    linked = {m.key: m for m in logged.metrics if m.run_id == run_id}
    assert {"rows", "rows_rejected", "accuracy"} <= set(linked)
    assert linked["accuracy"].value == pytest.approx(measured)
    assert linked["rows"].dataset_digest == summary["input"]["sha256"][:32]
    tags = client.get_model_version("imdb-sentiment", summary["model"]["version"]).tags
    assert not [key for key in tags if key.startswith("scoring.")]  # no per-scoring state
    if summary["estimated_accuracy"] is not None:
        assert run.data.metrics["estimated_accuracy/low"] == pytest.approx(interval[0])
    else:
        assert run.data.tags["estimate_withheld"] == summary["estimate_withheld"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == set(outputs.FILES)

    labels = _digits(tmp_path / "digits", 30, data_slices)
    (tmp_path / "digits" / "scan.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    done = _variants(smoke_config, "digits", "--model", "mnist-classifier", "--version", "1",
                     "--out", "digits-scores", processes=processes)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("30 rows scored, 1 rejected; ")
    predictions = pd.read_csv(tmp_path / "digits-scores" / "predictions.csv")
    assert predictions.columns.tolist() == ["id", "digit", "probability", "entropy"]
    assert len(predictions) == len(labels) and predictions["digit"].between(0, 9).all()
    rejected = pd.read_csv(tmp_path / "digits-scores" / "rejected.csv")
    assert rejected["id"].tolist() == ["scan.jpg"]


def test_a_scoring_that_fails_leaves_its_run_failed_and_no_files(
    smoke_run, smoke_config, tmp_path: Path, processes: Processes
) -> None:
    """A version whose model folder lost its Keras file: the run ends FAILED, no folder."""
    from keras_variants.registry.versions import alias_version, model_path
    from keras_variants.tracking.store import client_for

    client = client_for(smoke_config)
    champion = alias_version(client, "imdb-sentiment", "champion")
    broken = Path(shutil.copytree(model_path(client, "imdb-sentiment", champion),
                                  tmp_path / "broken-model"))  # fmt: skip
    for keras_file in broken.rglob("*.keras"):
        keras_file.unlink()
    version = client.create_model_version("imdb-sentiment", source=broken.as_uri())
    (tmp_path / "reviews.txt").write_text(REVIEWS[0] + "\n")
    done = _variants(smoke_config, "reviews.txt", "--model", "imdb-sentiment", "--version",
                     str(version.version), "--out", "out", processes=processes)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    (run,) = client.search_runs(
        [client.get_experiment_by_name("imdb-sentiment scoring").experiment_id],
        f"tags.model_version = '{version.version}' and tags.`keras_variants.kind` = 'scoring'",
    )
    assert run.info.status == "FAILED"


def test_clean_digits_show_no_drift_and_one_class_does(
    smoke_run, smoke_config, data_slices: Path, tmp_path: Path, processes: Processes
) -> None:
    """Against the champion's reference profile (written at registration from the test
    rows): the clean test digits raise no signal; digits of one class only shift the
    predicted classes, and --fail-on-drift then exits 3."""
    from keras_variants.cli.score import DRIFT_EXIT_CODE

    _digits(tmp_path / "clean", 500, data_slices)
    done = _variants(smoke_config, "clean", "--model", "mnist-classifier", "--fail-on-drift",
                     "--out", "clean-scores", processes=processes)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "clean-scores" / "summary.json").read_text())
    assert summary["drift"]["checked"] and not summary["drift"]["detected"], summary["drift"]
    assert done.stdout.splitlines()[0].endswith("; no drift")
    assert summary["estimated_accuracy"] is not None

    with np.load(data_slices / "mnist.npz") as mnist:
        images = np.concatenate([mnist["x_train"], mnist["x_test"]])
        labels = np.concatenate([mnist["y_train"], mnist["y_test"]])
    (tmp_path / "ones").mkdir()
    for i, image in enumerate(images[labels == 1]):
        Image.fromarray(image).save(tmp_path / "ones" / f"{i:04d}.png")
    done = _variants(smoke_config, "ones", "--model", "mnist-classifier", "--fail-on-drift",
                     "--out", "ones-scores", processes=processes)  # fmt: skip
    assert done.returncode == DRIFT_EXIT_CODE, done.stderr
    summary = json.loads((tmp_path / "ones-scores" / "summary.json").read_text())
    drifted = [s["name"] for s in summary["drift"]["signals"] if s["drifted"]]
    assert summary["drift"]["detected"] and "predicted_class" in drifted, summary["drift"]
    assert f"drift detected: {', '.join(drifted)}" in done.stdout


def test_a_scoring_run_left_running_by_a_dead_process_is_swept(tmp_path: Path) -> None:
    """A scoring killed with SIGKILL leaves its run RUNNING; the next start ends it FAILED
    (as a pipeline's), and leaves a live process's run alone."""
    from keras_variants.config.pipeline import build_config
    from keras_variants.tracking.store import client_for, owner_tags, sweep_stale_runs

    config = build_config(profile="smoke", workdir=tmp_path)
    client = client_for(config)
    gone = subprocess.Popen(["true"])
    gone.wait()
    scoring = {"keras_variants.kind": "scoring"}
    experiment = client.create_experiment("imdb")
    dead = client.create_run(experiment, tags=owner_tags() | scoring | {
        "keras_variants.pid": str(gone.pid)})  # fmt: skip
    alive = client.create_run(experiment, tags=owner_tags() | scoring)
    assert sweep_stale_runs(config) == [dead.info.run_id]
    assert client.get_run(dead.info.run_id).info.status == "FAILED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"


def test_a_scoring_deletes_the_last_scoring_tags_earlier_releases_left(tmp_path: Path) -> None:
    """Versions scored by earlier releases carry ``scoring.last_*`` tags; the next scoring
    with the version deletes them (its run, in the model's scoring experiment, is the
    history) and leaves the version's other tags alone."""
    from keras_variants.config.pipeline import build_config
    from keras_variants.scoring.runs import delete_stale_version_tags, scoring_run
    from keras_variants.tracking.store import client_for

    config = build_config(profile="smoke", workdir=tmp_path)
    client = client_for(config)
    client.create_registered_model("imdb-sentiment")
    created = client.create_model_version("imdb-sentiment", str(tmp_path / "model"))
    stale = {"scoring.last_run_id": "r0", "scoring.last_at": "2026-12-01T00:00:00+00:00",
             "scoring.last_result": "2 rows scored, 2 rejected; no drift"}  # fmt: skip
    for key, value in {**stale, "monitoring.profile": "monitoring/v1/profile.npz"}.items():
        client.set_model_version_tag("imdb-sentiment", created.version, key, value)
    version = client.get_model_version("imdb-sentiment", created.version)
    with scoring_run(client, config, "imdb", version) as run_id:
        pass
    tags = client.get_model_version("imdb-sentiment", created.version).tags
    assert tags == {"monitoring.profile": "monitoring/v1/profile.npz"}
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "imdb-sentiment scoring"
    # A scoring beside it deleted them first: nothing left to delete, no error.
    assert delete_stale_version_tags(client, version) == sorted(stale)
