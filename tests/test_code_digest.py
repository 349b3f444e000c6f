"""Digests of "the code that computes X" come from what X imports, not from a list."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from keras_variants.code_digest import code_digest, import_closure, project_roots
from keras_variants.registry import served_accuracy
from keras_variants.tracking.trial_key import TRAINING

GATE = served_accuracy.__name__


@pytest.fixture
def package_copy(tmp_path: Path) -> dict[str, Path]:
    """A copy of the project's packages whose files a test may change."""
    roots = {}
    for name, folder in project_roots().items():
        roots[name] = Path(shutil.copytree(folder, tmp_path / name))
    return roots


def _edit(roots: dict[str, Path], relative: str, old: str, new: str) -> None:
    path = roots["keras_variants"] / relative
    text = path.read_text()
    assert old in text, f"{relative} no longer holds {old!r}; pick another line to change"
    path.write_text(text.replace(old, new, 1))


def test_a_closure_holds_what_a_module_imports_and_nothing_above_it() -> None:
    training = set(import_closure(TRAINING))
    # Imported inside functions (lanes import TensorFlow code on use): still on the path.
    assert {
        "keras_variants.model.training",
        "keras_variants.model.builders",
        "keras_variants.model.inference",
        "keras_variants.serving.pyfunc",
        "keras_variants.serving.saving",  # the model's code file is its text
        "keras_variants.data.preprocessing",
        "keras_variants.config.variants",
    } <= training
    assert not any(m.startswith(("keras_variants.tracking", "keras_variants.registry",
                                 "keras_variants.reporting", "keras_variants.cli"))
                   for m in training)  # fmt: skip
    gate = set(import_closure(GATE))
    assert {"keras_variants.serving.pyfunc", "keras_variants.model.inference", GATE} <= gate
    assert "keras_variants.model.training" not in gate


def test_a_closure_of_a_hand_made_package(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"  # not the project's: not followed
        "from pkg import d\n"  # a module imported from its package
        "if TYPE_CHECKING:\n"
        "    from pkg.c import C\n"  # never runs
        "def f():\n"
        "    from pkg.b import g\n"  # runs on use
    )
    (package / "b.py").write_text("g = 1\n")
    (package / "c.py").write_text("C = 1\n")
    (package / "d.py").write_text("")
    assert import_closure("pkg.a", roots={"pkg": package}) == ["pkg", "pkg.a", "pkg.b", "pkg.d"]


@pytest.mark.parametrize(
    ("root", "relative", "old", "new"),
    [
        # the training's own code, and code it reaches only inside a function
        (
            TRAINING,
            "lanes/jobs.py",
            "def train(job: TrainJob, report: EpochReport)",
            "def train_(job: TrainJob, report: EpochReport)",
        ),
        (TRAINING, "model/inference.py", "def inference_outputs(", "def inference_outputs_("),
        (TRAINING, "data/preprocessing.py", "import re\n", "import re  # changed\n"),
        # the gate's score: the correctness loop, the served model and the inference it calls
        (
            GATE,
            "registry/served_accuracy.py",
            "predicted == np.asarray(",
            "predicted != np.asarray(",
        ),
        (GATE, "serving/answers.py", "int(self.label == POSITIVE)", "int(self.label != POSITIVE)"),
        (GATE, "model/inference.py", "def inference_outputs(", "def inference_outputs_("),
        (GATE, "serving/limits.py", "MAX_MC_SAMPLES = 100", "MAX_MC_SAMPLES = 99"),
    ],
)
def test_changing_a_function_on_the_path_changes_the_digest(
    package_copy: dict[str, Path], root: str, relative: str, old: str, new: str
) -> None:
    before = code_digest(root, roots=package_copy)
    assert code_digest(root, roots=package_copy) == before  # deterministic
    _edit(package_copy, relative, old, new)
    assert code_digest(root, roots=package_copy) != before


@pytest.mark.parametrize("root", [TRAINING, GATE])
def test_changing_code_off_the_path_keeps_the_digest(
    package_copy: dict[str, Path], root: str
) -> None:
    before = code_digest(root, roots=package_copy)
    _edit(package_copy, "reporting/report_pages.py", "def to_html(", "def to_html_(")
    _edit(package_copy, "cli/main.py", "def main(", "def main_(")
    assert code_digest(root, roots=package_copy) == before


def test_the_gate_key_and_the_trial_key_use_the_derived_digests(monkeypatch) -> None:
    """A fix in the served-accuracy path gives the gate a new key, so a champion's
    remembered score is computed afresh rather than compared with a stale one."""
    import numpy as np

    from keras_variants.config.pipeline import build_config
    from keras_variants.config.trials import trials
    from keras_variants.tracking import trial_key

    inputs = served_accuracy.GateInputs(["a review"], np.array([1]))
    config = build_config(profile="smoke", workdir=Path("/nonexistent"))
    trial = trials(("imdb_dense",), (0,), {})[0]
    gate_key = inputs.key
    key = trial_key.trial_key_for(config, trial, {"imdb.npz": "a" * 64}, "float32")
    digests = {GATE: "1" * 64, TRAINING: "2" * 64}
    monkeypatch.setattr(served_accuracy, "code_digest", lambda name: digests[name])
    monkeypatch.setattr(trial_key, "code_digest", lambda name: digests[name])
    assert served_accuracy.GateInputs(["a review"], np.array([1])).key != gate_key
    assert trial_key.trial_key_for(config, trial, {"imdb.npz": "a" * 64}, "float32") != key
