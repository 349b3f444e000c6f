"""The commands a person runs by hand answer a bad input before any heavy import: `variants
score` decodes a .txt, checks a folder and a table's columns before MLflow, pandas, Prefect
or TensorFlow is imported; `variants predict` checks its image files before TensorFlow."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from keras_variants.errors import InputError, VariantsError
from keras_variants.scoring.inputs import input_kind
from tests.helpers import Processes

# Run as a user runs the command; then say which heavy libraries the process had imported.
COMMAND_THEN_IMPORTS = """
import sys
from keras_variants.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    heavy = ("mlflow", "tensorflow", "prefect", "pandas", "keras")
    print("imported:", ",".join(m for m in heavy if m in sys.modules), "exit:", exc.code)
"""


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("latin1.txt", "latin1.txt: line 2 is not UTF-8 text; save the file as UTF-8"),
        ("empty.txt", "empty.txt: the file is empty; put one review per line in it"),
        ("folder", "folder: the folder has no files; put the images to score in it"),
        ("table.xlsx", "cannot score a .xlsx file"),
        ("missing.txt", "missing.txt: no such file or folder"),
    ],
)
def test_input_kind_refuses_a_bad_input_whatever_the_model(
    tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "latin1.txt").write_bytes("fine\nna\xefve\n".encode("latin-1"))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "folder").mkdir()
    (tmp_path / "table.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match=message):
        input_kind(tmp_path / name)


def test_input_kind_of_good_inputs(tmp_path: Path) -> None:
    (tmp_path / "reviews.txt").write_text("a fine film\nawful\n")
    (tmp_path / "both.csv").write_text("text,image\ngood,a.png\n")
    assert input_kind(tmp_path / "reviews.txt") == "text"
    assert input_kind(tmp_path / "both.csv") == "text"
    assert input_kind(tmp_path / "both.csv", "image") == "image"


def test_score_refuses_a_non_utf8_file_before_any_heavy_import(processes: Processes) -> None:
    bad = processes.folder / "reviews.txt"
    bad.write_bytes("fine\nna\xefve\n".encode("latin-1"))
    done = processes.run(
        [sys.executable, "-c", COMMAND_THEN_IMPORTS, "score", str(bad), "--model",
         "imdb-sentiment"],
        timeout=120,
    )  # fmt: skip
    assert "line 2 is not UTF-8 text" in done.stderr, done.stderr
    assert done.stdout.strip() == "imported:  exit: 1", done.stdout


def test_predict_names_a_file_that_is_no_image(tmp_path: Path) -> None:
    from keras_variants.cli.predict import sent_inputs

    (tmp_path / "note.png").write_text("not an image")
    with pytest.raises(VariantsError, match=r"note.png: not an image Pillow can read"):
        sent_inputs("mnist-classifier", [str(tmp_path / "note.png")])
    with pytest.raises(VariantsError, match=r"gone.png: cannot read the image"):
        sent_inputs("mnist-classifier", [str(tmp_path / "gone.png")])
    assert sent_inputs("imdb-sentiment", ["a fine film"]) == ["a fine film"]
