"""The model card of a registered version: its sentences from hand-made measurements, and
the card the smoke pipeline writes on its champions (description and run artifacts)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from keras_variants.registry import model_card_store
from keras_variants.registry.model_card import CardFacts, card_markdown, limitations


def _facts(test: dict[str, float], far: dict | None = None, profile: str = "full") -> CardFacts:
    return CardFacts(
        model="mnist-classifier",
        version="3",
        variant="mnist_cnn",
        label="mnist_cnn",
        dataset="mnist",
        run_id="r1",
        architecture="cnn",
        parameter_count="1000",
        training={"profile": profile, "train_rows": "600", "epochs": "1"},
        data_sha256={"mnist.npz": "ab" * 32},
        test=test,
        far_from_data=far,
    )


ROTATION = {"axis": "angle_degrees", "points": [0, 45, 90], "rows": 100}
SETS = {"axis": "set", "points": ["random_words", "shuffled_words"], "rows": 100}


@pytest.mark.parametrize(
    ("test", "far", "profile", "expected"),
    [
        (  # the example: accuracy falls at 90°, confidence does not
            {"test/accuracy": 0.98},
            ROTATION | {"accuracy": [0.98, 0.60, 0.14], "mean_max_probability": [0.99, 0.85, 0.81]},
            "full",
            ["at 90° rotation accuracy falls to 0.14 (test 0.98) while mean confidence stays 0.81"],
        ),
        (  # the most overconfident turn is named, not the last one
            {"test/accuracy": 0.98},
            ROTATION | {"accuracy": [0.98, 0.20, 0.30], "mean_max_probability": [0.99, 0.95, 0.60]},
            "full",
            ["at 45° rotation accuracy falls to 0.20 (test 0.98) while mean confidence stays 0.95"],
        ),
        (  # accuracy falls but confidence falls with it: honest, no sentence
            {"test/accuracy": 0.98},
            ROTATION | {"accuracy": [0.98, 0.60, 0.14], "mean_max_probability": [0.99, 0.70, 0.30]},
            "full",
            [],
        ),
        (  # sure about noise; blind to word order
            {"test/accuracy": 0.87},
            SETS | {"accuracy": [None, 0.86], "mean_max_probability": [0.74, 0.80]},
            "full",
            [
                "on reviews of random vocabulary words (no sentiment at all) mean confidence is "
                "0.74; 0.50 would say it cannot tell",
                "with each review's words shuffled accuracy is 0.86 (test 0.87): it ignores word "
                "order, so negation and sarcasm are lost",
            ],
        ),
        (  # unsure about noise, hurt by shuffling: nothing to say
            {"test/accuracy": 0.87},
            SETS | {"accuracy": [None, 0.70], "mean_max_probability": [0.55, 0.80]},
            "full",
            [],
        ),
        (  # miscalibrated, smoke profile, no far-from-data numbers
            {"test/accuracy": 0.5, "test/ece": 0.12},
            None,
            "smoke",
            [
                "its probabilities are off by 0.120 on average (ECE): read them loosely",
                "trained on the smoke profile (600 training rows, 1 epochs): "
                "for checks, not for use",
            ],
        ),
    ],
)
def test_limitations_state_measurements(test, far, profile, expected) -> None:
    assert limitations(_facts(test, far, profile)) == expected


def test_card_states_what_was_measured_and_the_decision() -> None:
    facts = _facts(
        {"test/accuracy": 0.9812, "test/auc": 0.99},
        ROTATION | {"accuracy": [0.98, 0.60, 0.14], "mean_max_probability": [0.99, 0.85, 0.81]},
    )
    text = card_markdown(facts)
    assert "| accuracy | 0.9812 |" in text and "| AUC | 0.9900 |" in text
    assert f"sha256 `{'ab' * 32}`" in text
    assert "| 90 | 0.140 | 0.810 | - |" in text
    assert "not yet decided by the gate" in text
    decided = card_markdown(CardFacts(**{**facts.__dict__, "decision": "rejected", "reason": "p"}))
    assert "rejected: p" in decided and "not yet decided" not in decided


def test_a_card_that_cannot_be_written_never_fails_its_caller(tmp_path: Path, caplog) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    model_card_store._warned.clear()
    with caplog.at_level(logging.DEBUG, logger=model_card_store.__name__):
        assert model_card_store.try_write_card(client, "no-such-model", "1") is None
        assert model_card_store.try_write_card(client, "no-such-model", "2") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no-such-model v1" in warnings[0].getMessage()


def test_champions_carry_their_card(smoke_run, smoke_config, tmp_path: Path) -> None:
    from keras_variants.tracking.store import client_for

    client = client_for(smoke_config)
    assert smoke_run.decisions
    for decision in smoke_run.decisions:
        version = client.get_model_version_by_alias(decision.model, "champion")
        tags = version.tags
        description = version.description or ""
        assert description.startswith(f"# {decision.model} v{version.version}: "), description
        assert f"variant `{tags['variant']}`" in description
        assert f"{tags['promotion.decision']}: {tags['promotion.reason']}" in description
        folder = tmp_path / decision.model
        folder.mkdir()
        markdown = Path(
            client.download_artifacts(version.run_id, model_card_store.CARD_FILE, str(folder))
        ).read_text()
        assert markdown == description  # short enough to be the description whole
        card = json.loads(
            Path(
                client.download_artifacts(version.run_id, model_card_store.CARD_JSON, str(folder))
            ).read_text()
        )
        assert card["variant"] == tags["variant"] and card["version"] == str(version.version)
        assert card["decision"] == "promoted" and card["reason"] == tags["promotion.reason"]
        shas = {f"data.{file}.sha256": sha for file, sha in card["data_sha256"].items()}
        assert shas and shas.items() <= tags.items()
        measured = {"test/accuracy", "test/ece", "test/brier", "test/nll"}
        measured |= {"test/auc"} if decision.model == "imdb-sentiment" else set()  # two classes
        assert measured <= card["test"].keys()
        logged = client.get_run(version.run_id).data.metrics  # tags keep only the headline
        for key, value in card["test"].items():
            assert logged[key] == pytest.approx(value, rel=1e-5)
        assert {"test/accuracy", "test/loss"} <= tags.keys() and "test/ece" not in tags
        assert card["far_from_data"], "the run's uncertainty.json reached the card"
