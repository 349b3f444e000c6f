"""Serving: one preprocessing from raw input to model input, the pyfunc models users call,
bad requests, and a real `mlflow models serve` answering text and PNG digits."""

from __future__ import annotations

import base64
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_variants.config.variants import NUM_WORDS, VARIANTS
from keras_variants.data.datasets import IMDB_WORD_INDEX_FILE, load_dataset
from keras_variants.data.preprocessing import (
    encode_inputs,
    keras_word_ids,
    pixels_from_image,
    png_base64,
    ranks_from_texts,
    texts_from_word_ids,
)
from keras_variants.errors import VariantsError
from keras_variants.model import precision
from keras_variants.model.builders import build_model
from keras_variants.registry import served_accuracy
from keras_variants.registry.loading import verified_path
from keras_variants.registry.versions import alias_version, model_path
from keras_variants.serving import pyfunc
from keras_variants.serving.answers import Sentiment
from keras_variants.serving.saving import (
    load_served,
    requirements,
    save_model,
    warn_if_environment_differs,
)
from keras_variants.tracking.store import client_for
from tests.helpers import BIN, declared_png, free_port, process, wait_for


def _word_index(folder: Path) -> dict[str, int]:
    return json.loads((folder / IMDB_WORD_INDEX_FILE).read_text())


def test_tokenizing_every_review_reproduces_the_stored_sequences(real_data_dir: Path) -> None:
    """No skew: all 50,000 raw texts, tokenized the served way, give imdb.npz's word ids."""
    data = load_dataset("imdb", real_data_dir)
    reviews = pd.read_parquet(real_data_dir / "imdb_reviews.parquet")
    word_index = _word_index(real_data_dir)
    for split, stored in (("train", data.train), ("test", data.test)):
        texts = reviews.loc[reviews["split"] == split, "text"].tolist()
        ids = keras_word_ids(ranks_from_texts(texts, word_index), NUM_WORDS)
        np.testing.assert_array_equal(ids.offsets, stored.inputs.offsets)
        np.testing.assert_array_equal(ids.values, stored.inputs.values)


def test_texts_rebuilt_from_word_ids_tokenize_back_to_them(data_slices: Path) -> None:
    test = load_dataset("imdb", data_slices).test
    word_index = _word_index(data_slices)
    texts = texts_from_word_ids(test.inputs, word_index, NUM_WORDS)
    again = keras_word_ids(ranks_from_texts(texts, word_index), NUM_WORDS)
    np.testing.assert_array_equal(again.values, test.inputs.values)
    assert (test.inputs.values == 2).any()  # out-of-vocabulary ids survive the round trip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, data_slices: Path):
    """Both served models, saved and loaded back the way the registry loads them."""
    folder = tmp_path_factory.mktemp("served")
    models = {}
    for name, example in (("imdb_dense", "A fine film."), ("mnist_cnn", None)):
        variant = VARIANTS[name]
        data = load_dataset(variant.dataset, data_slices)
        example = example or png_base64(data.test.inputs[0])
        save_model(
            folder / name,
            variant,
            build_model(variant, seed=1),
            example,
            data_slices / IMDB_WORD_INDEX_FILE,
            requirements(),
        )
        models[variant.dataset] = (load_served(str(folder / name)), data)
    return models | {"folder": folder}


def test_served_sentiment_equals_the_keras_model_on_stored_sequences(served, data_slices):
    model, data = served["imdb"]
    keras_model = model.unwrap_python_model().keras_model
    texts = pd.read_parquet(data_slices / "imdb_reviews.parquet").query("split == 'test'")
    answers = model.predict(texts["text"].tolist())
    expected = np.asarray(keras_model(encode_inputs(data.test.inputs, VARIANTS["imdb_dense"])))
    probabilities = np.array([a.probability for a in answers])
    np.testing.assert_allclose(probabilities, expected[:, 0], atol=1e-6)
    assert {a.label for a in answers} <= {"positive", "negative"}
    assert all((a.label == "positive") == (a.probability > 0.5) for a in answers)


def test_served_digits_equal_the_keras_model_on_stored_pixels(served) -> None:
    model, data = served["mnist"]
    keras_model = model.unwrap_python_model().keras_model
    images = data.test.inputs[:50]
    answers = model.predict([png_base64(image) for image in images])
    expected = np.asarray(keras_model(encode_inputs(images, VARIANTS["mnist_cnn"])))
    np.testing.assert_allclose([a.probabilities for a in answers], expected, atol=1e-6)
    assert [a.digit for a in answers] == expected.argmax(axis=1).tolist()


ENVIRONMENT_DIFFERENCES = [
    ({}, None, []),
    ({"keras": "0.0.1"}, None, ["keras 3.15.1 is installed; the model was saved with 0.0.1"]),
    ({"no-such-package-x": "1.0"}, None,
     ["no-such-package-x is not installed; the model was saved with 1.0"]),
    ({}, "3.9.2", [f"Python {'.'.join(map(str, sys.version_info[:3]))} runs it; "
                   "the model was saved with 3.9.2"]),
]  # fmt: skip


@pytest.mark.parametrize(("pins", "python", "expected"), ENVIRONMENT_DIFFERENCES)
def test_a_model_saved_in_another_environment_is_said_on_loading(
    served, tmp_path: Path, pins: dict, python: str | None, expected: list[str], caplog
) -> None:
    """The served model's requirements and Python against this environment's, as MLflow's
    own check on loading says them (which this one replaces)."""
    import shutil

    import yaml

    folder = Path(shutil.copytree(served["folder"] / "imdb_dense", tmp_path / "model"))
    lines = (folder / "requirements.txt").read_text().splitlines()
    lines += [f"{name}=={version}" for name, version in pins.items()]
    (folder / "requirements.txt").write_text("\n".join(lines))
    if python:
        meta = yaml.safe_load((folder / "MLmodel").read_text())
        meta["flavors"]["python_function"]["python_version"] = python
        (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    assert warn_if_environment_differs(str(folder)) == expected
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == expected


def _png(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_are_converted_the_way_mnist_digits_were(data_slices: Path) -> None:
    digit = load_dataset("mnist", data_slices).test.inputs[0]
    np.testing.assert_array_equal(pixels_from_image(_png(digit)), digit)  # 28x28: as it is
    np.testing.assert_array_equal(pixels_from_image(_png(255 - digit, "RGB")), digit)  # inverted
    # A large dark-on-light scan is fitted into 20x20 and centred by its mass.
    scan = np.full((200, 150), 255, np.uint8)
    scan[40:160, 60:90] = 0  # a vertical bar, like a "1"
    pixels = pixels_from_image(_png(scan))
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    rows, cols = np.nonzero(pixels > 127)
    assert rows.max() - rows.min() + 1 == 20  # the long side fills the 20-pixel box
    assert abs(rows.mean() - 13.5) <= 1 and abs(cols.mean() - 13.5) <= 1
    assert pixels[0].max() == 0 and pixels[:, 0].max() == 0  # black background


BOMB = base64.b64encode(declared_png(20_000, 20_000)).decode()  # Pillow's bomb error
BAD_REQUESTS = [
    ("imdb", [""], "input 0 is an empty string; send a review text"),
    ("imdb", ["fine", 5], "input 1 is a number; send a review text"),
    ("imdb", "just a string", '"inputs" must be a list of review texts, not a str'),
    ("imdb", [], '"inputs" is empty; send a list of review texts'),
    ("imdb", ["qqqzzx vvbbnn"], "input 0 has no word the model knows; send the text of a"),
    ("imdb", ["x" * 100_001], "input 0 has 100,001 characters, over the limit of 100,000"),
    ("imdb", ["good"] * 10_001, "10,001 inputs is over the limit of 10,000 per request"),
    ("mnist", ["bm90IGFuIGltYWdl"], "input 0: the bytes are not an image Pillow can read"),
    ("mnist", ["%%%"], "input 0: the string is not base64"),
    ("mnist", [BOMB], "input 0: the image is more than 4096x4096 pixels, over the limit of"),
    ("mnist", [[0] * 784], "input 0 is a list; send a base64-encoded image"),
]


@pytest.mark.parametrize(("dataset", "inputs", "message"), BAD_REQUESTS)
def test_bad_requests_get_one_sentence_naming_the_problem(served, dataset, inputs, message):
    model, _ = served[dataset]
    with pytest.raises(pyfunc.BadRequest) as raised:
        model.predict(inputs)
    assert raised.value.message.startswith(message)
    assert raised.value.get_http_status_code() == 400
    raised.value.message = "Failed to predict data ..."  # what MLflow's server does to it
    assert raised.value.message.startswith(message)


class _Answers:
    """A stand-in for a loaded pyfunc model with known answers: review i is "positive"
    when ``positive[i]``; it records the sizes of the batches it was asked."""

    def __init__(self, positive: list[bool]) -> None:
        self.positive, self.batches = positive, []

    def unwrap_python_model(self) -> object:
        return SimpleNamespace(word_index_sha256=None)  # no word index of its own

    def predict(self, inputs: list[str]) -> list[Sentiment]:
        self.batches.append(len(inputs))
        return [Sentiment.of(1.0 if self.positive[int(text)] else 0.0) for text in inputs]


def test_served_correctness_marks_each_answer_in_scoring_batches() -> None:
    # 300 reviews: the first 100 answered positive; labels 1 for the first 150.
    positive = [i < 100 for i in range(300)]
    labels = np.array([1] * 150 + [0] * 150)
    inputs = served_accuracy.GateInputs([str(i) for i in range(300)], labels)
    model = _Answers(positive)
    # right: 100 positives labelled 1, and the 150 negatives labelled 0: 250 of 300
    correct = served_accuracy.ServedAccuracy(inputs)(model)
    assert correct.tolist() == [True] * 100 + [False] * 50 + [True] * 150
    assert model.batches == [256, 44]


def test_the_gate_refuses_a_model_scored_with_another_word_index(served, data_slices) -> None:
    model, data = served["imdb"]
    gate = served_accuracy.gate_inputs(data, np.arange(20))
    assert gate.word_index_sha256 == model.unwrap_python_model().word_index_sha256
    assert served_accuracy.ServedAccuracy(gate)(model).shape == (20,)
    other = served_accuracy.GateInputs(gate.inputs, gate.labels, word_index_sha256="0" * 64)
    with pytest.raises(VariantsError, match=r"trained with word index sha256 .* score it on data"):
        served_accuracy.ServedAccuracy(other)(model)


@pytest.mark.parametrize("dataset", ["imdb", "mnist"])
def test_the_gate_keeps_what_it_decoded_for_the_profile(served, dataset) -> None:
    """The answers through predict_stored are predict's, and what it decoded on the way,
    batch after batch, is every input's stored example in order (the profile decodes none
    again)."""
    from keras_variants.data.ragged import take_rows

    model, data = served[dataset]
    python_model = model.unwrap_python_model()
    rows = np.arange(300)  # more than one scoring batch, the last one partial
    scorer = served_accuracy.ServedAccuracy(served_accuracy.gate_inputs(data, rows))
    answers, stored = scorer.answers_and_stored(python_model)
    assert answers == scorer.answers(model)
    assert len(stored) == len(rows)
    for picked in (np.arange(300), np.array([299, 0, 256, 255])):
        expected = python_model.stored_inputs([scorer.gate.inputs[i] for i in picked])
        got = take_rows(stored, picked)
        if dataset == "mnist":
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_array_equal(got.values, expected.values)
            np.testing.assert_array_equal(got.offsets, expected.offsets)


@pytest.mark.parametrize("dataset", ["imdb", "mnist"])
def test_monitoring_sees_the_probabilities_predict_answers_with(served, dataset) -> None:
    """The last hidden layer's pass (what monitoring compares) gives predict's own
    probabilities (to float32 rounding: predict's and monitoring's turn the same outputs
    into probabilities each), and hidden activations as wide as the output layer's input."""
    model, data = served[dataset]
    python_model = model.unwrap_python_model()
    inputs = served_accuracy.gate_inputs(data, np.arange(300)).inputs
    hidden, probabilities = python_model.last_hidden(inputs)
    answers = python_model.predict(None, inputs)
    if dataset == "mnist":
        expected = np.array([answer.probabilities for answer in answers])
    else:
        expected = np.array([[1 - a.probability, a.probability] for a in answers])
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6)
    head = python_model.keras_model.layers[-1]
    assert hidden.shape == (300, head.input.shape[-1])


def _post(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json=body, timeout=60)


def test_mlflow_models_serve_answers_text_png_and_bad_requests(
    smoke_run, smoke_config, data_slices, tmp_path, processes
) -> None:
    """The stock scoring server on the registered champions, as the README runs it (writing
    no bytecode into the model's folder, so that variants still loads it afterwards)."""
    env = processes.env(MLFLOW_TRACKING_URI=smoke_config.tracking_uri, PYTHONDONTWRITEBYTECODE="1")
    digit = load_dataset("mnist", data_slices).test.inputs[0]
    client = client_for(smoke_config)

    def champion_path(name: str) -> str:
        return model_path(client, name, alias_version(client, name, "champion"))

    for model in ("imdb-sentiment", "mnist-classifier"):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [
            str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{model}@champion",
            "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        with process(args, env, tmp_path, tmp_path / f"{model}.log"):
            wait_for(lambda: httpx.get(f"{url}/ping").status_code == 200, 120, model)  # noqa: B023
            if model == "imdb-sentiment":
                answer = _post(url, {"inputs": ["A wonderful film, I loved it.", "Awful."]})
                assert answer.status_code == 200, answer.text
                predictions = answer.json()["predictions"]
                assert [set(p) for p in predictions] == [{"label", "probability", "entropy"}] * 2
                assert [p["entropy"] for p in predictions] == [None, None]  # no mc_samples
                bad = _post(url, {"inputs": [12345, "x" * 50_000]})
                assert bad.status_code == 400
                assert bad.json()["message"] == "input 0 is a number; send a review text"
            else:
                answer = _post(url, {"inputs": [png_base64(digit)]})
                assert answer.status_code == 200, answer.text
                (prediction,) = answer.json()["predictions"]
                assert len(prediction["probabilities"]) == 10
                assert prediction["probability"] == max(prediction["probabilities"])
                probabilities = prediction["probabilities"]
                assert prediction["digit"] == probabilities.index(max(probabilities))
                # Over HTTP as in this process: the same registered model, the same answer.
                (here,) = load_served(champion_path(model)).predict([png_base64(digit)])
                assert here.digit == prediction["digit"]
                assert here.probabilities == pytest.approx(probabilities, abs=1e-6)
                garbage = base64.b64encode(b"not an image" * 1000).decode()
                bad = _post(url, {"inputs": [garbage]})
                assert bad.status_code == 400 and len(bad.text) < 300
                assert "input 0: the bytes are not an image" in bad.json()["message"]
            assert _post(url, {"inputs": []}).status_code == 400
            assert httpx.get(f"{url}/ping").status_code == 200  # still up after bad requests
        champion = alias_version(client, model, "champion")
        assert verified_path(client, model, champion)  # its files are still as registered


def test_variants_predict_prints_label_and_probability(
    smoke_run, smoke_config, tmp_path, processes
):
    digit = tmp_path / "digit.png"
    digit.write_bytes(_png(np.full((28, 28), 255, np.uint8)))
    env = processes.env(MLFLOW_TRACKING_URI=smoke_config.tracking_uri)
    variants = str(BIN / "variants")
    text = subprocess.run(
        [variants, "predict", "--model", "imdb-sentiment", "A wonderful film, I loved it."],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(("positive (probability positive 0.", "negative (prob"))
    image = subprocess.run(
        [variants, "predict", "--model", "mnist-classifier", str(digit), "--version", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert image.returncode == 0, image.stderr
    assert image.stdout.startswith(f"{digit}: ") and "(probability 0." in image.stdout
    missing = subprocess.run(
        [variants, "predict", "--model", "mnist-classifier", str(tmp_path / "nope.png")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 1
    assert "nope.png: cannot read the image" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("dataset", ["imdb", "mnist"])
def test_the_prediction_log_records_the_reference_profiles_features(
    served, dataset, tmp_path
) -> None:
    """Each logged input carries exactly the input statistics that monitoring observes for a
    reference profile, with the same values, so drift can be computed on live traffic."""
    from functools import partial

    from keras_variants.monitoring.observe import input_features, observe
    from keras_variants.serving.prediction_log import LOG_FILE, PredictionLog

    model, data = served[dataset]
    python_model = model.unwrap_python_model()
    if dataset == "imdb":
        ids = data.test.inputs.take(slice(0, 5))
        inputs = texts_from_word_ids(ids, python_model.word_index, NUM_WORDS)
    else:
        inputs = [png_base64(image) for image in data.test.inputs[:5]]
    answers, stored = python_model.predict_stored(inputs)
    log = PredictionLog(tmp_path, partial(input_features, python_model))
    log.write(inputs, stored, answers, 1.0)
    lines = (tmp_path / LOG_FILE).read_text().splitlines()
    logged = [json.loads(line)["features"] for line in lines]
    reference = observe(python_model, inputs).features  # what a reference profile holds
    assert len(logged) == len(inputs) and all(set(row) == set(reference) for row in logged)
    for name, values in reference.items():
        np.testing.assert_allclose([row[name] for row in logged], values, atol=1e-6)


def test_the_server_decodes_each_digit_once_and_its_log_stops_with_the_request(
    served, tmp_path, monkeypatch
) -> None:
    """With a prediction log, each image is decoded once per request (the log's features
    come from the pixels the prediction decoded), and the log is part of the request's
    bounded work: a request stopped while it is being logged logs nothing and gets 504."""
    import threading
    from functools import partial

    from keras_variants.monitoring.observe import input_features
    from keras_variants.serving.prediction_log import LOG_FILE, PredictionLog
    from keras_variants.serving.server import (
        ApiError,
        Limits,
        ScoringApp,
        ServedVersion,
        pyfunc_predictor,
    )

    model, data = served["mnist"]
    python_model = model.unwrap_python_model()
    decoded = []
    real_pixels = pyfunc.pixels_from_image
    monkeypatch.setattr(
        pyfunc, "pixels_from_image", lambda raw: decoded.append(1) or real_pixels(raw)
    )
    inputs = [png_base64(image) for image in data.test.inputs[:300]]  # two log batches
    stop = threading.Event()

    def features(texts, stored):  # the request's time runs out while it is logged
        stop.set()
        return input_features(python_model, texts, stored)

    for folder, log_features, status in (("kept", None, 200), ("stopped", features, 504)):
        log = PredictionLog(
            tmp_path / folder, log_features or partial(input_features, python_model)
        )
        app = ScoringApp(
            pyfunc_predictor(python_model), ServedVersion("m", "1"), Limits(), sink=log.write
        )
        decoded.clear()
        stop.clear()
        try:
            body = app._predict(inputs, {"mc_samples": 0}, stop)
            answered = 200
        except ApiError as error:
            answered, body = error.status, b""
        assert answered == status and len(decoded) == len(inputs)
        logged = (tmp_path / folder / LOG_FILE).read_text().splitlines()
        if status == 200:
            assert len(json.loads(body)["predictions"]) == len(logged) == len(inputs)
        else:
            assert logged == []


def test_a_dropout_model_returns_mc_uncertainty_on_request(served, tmp_path, data_slices):
    variant = VARIANTS["imdb_dropout"]
    save_model(
        tmp_path / "dropout",
        variant,
        build_model(variant, seed=1),
        "A fine film.",
        data_slices / IMDB_WORD_INDEX_FILE,
        requirements(),
    )
    model = load_served(str(tmp_path / "dropout"))
    assert "'mc_samples': long (default: 0)" in str(model.metadata.signature.params)
    texts = ["A wonderful film, I loved it.", "Dull, long and badly acted."]
    plain = model.predict(texts)
    assert all(a.entropy is None for a in plain)
    mc = model.predict(texts, params={"mc_samples": 30})
    assert all(0 < a.entropy <= math.log(2) for a in mc)
    assert [a.probability for a in mc] != [a.probability for a in plain]  # dropout was on
    with pytest.raises(pyfunc.BadRequest, match="from 0 to 100"):
        model.predict(texts, params={"mc_samples": 1_000})
    no_dropout, _ = served["imdb"]
    with pytest.raises(
        pyfunc.BadRequest, match=r"needs a model with dropout; this one \(imdb_dense"
    ):
        no_dropout.predict(texts, params={"mc_samples": 30})


def test_a_mixed_bfloat16_model_serves_what_it_computes(tmp_path, data_slices) -> None:
    variant = VARIANTS["mnist_cnn"]
    model = build_model(variant, seed=1, precision="mixed_bfloat16")
    assert {layer.compute_dtype for layer in model.layers[:-1]} == {"bfloat16"}
    assert model.layers[-1].compute_dtype == "float32"  # probabilities in full precision
    images = load_dataset("mnist", data_slices).test.inputs[:20]
    save_model(tmp_path / "bf16", variant, model, png_base64(images[0]), None, requirements())
    served = load_served(str(tmp_path / "bf16"))
    answers = served.predict([png_base64(image) for image in images])
    expected = np.asarray(model(encode_inputs(images, variant)))
    np.testing.assert_allclose([a.probabilities for a in answers], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("requested", "architecture", "native", "resolved"),
    [
        ("auto", "cnn", True, "mixed_bfloat16"),
        ("auto", "cnn", False, "float32"),
        ("auto", "dense", True, "float32"),  # measured slower in bfloat16
        ("float32", "cnn", True, "float32"),
        ("mixed_bfloat16", "dense", False, "mixed_bfloat16"),
    ],
)
def test_precision_auto_uses_bfloat16_only_where_it_pays(
    monkeypatch, requested, architecture, native, resolved
):
    monkeypatch.setattr(precision, "native_bfloat16", lambda: native)
    assert precision.resolve_precision(requested, architecture) == resolved
