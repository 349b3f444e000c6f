"""Monitoring benchmark: the drift signals' detection and false-alarm rates, and the accuracy
estimate's error and interval coverage on every known shift (each left out of the
interval's fitting), for the registered champions, against the issue's targets; what
`variants score` prints for the issue's examples (with their true accuracy); and digits of
another source saved at 8, 28 and 64 pixels through the served model. Needs a store with
champions (after `variants run --data-dir ../shared/data`); re-measures each champion on
``--rows`` of its data's test rows (the registration measured it on all of them), prints
the figures and writes them into BENCHMARKS.md between the `<!-- monitoring -->` markers:

    python benchmarks/monitoring.py [--tracking-uri sqlite:///$PWD/mlflow.db] [--rows 10000]
                                    [--store-profile]

The accuracy estimate's interval on clean held-out rows is printed by their number (50 to
1,000 rows). ``--store-profile`` stores the re-measured profile and measurement with each
champion, as its registration would have, so that what `variants score` prints comes from
the code measured here, not from the one that registered it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sections import write_section  # benchmarks/ runs as scripts: its own folder

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- monitoring -->", "<!-- /monitoring -->"
SIDES = (8, 28, 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{REPO / 'mlflow.db'}")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--store-profile", action="store_true")
    args = parser.parse_args()

    from mlflow.tracking import MlflowClient

    from keras_variants.data.datasets import load_dataset
    from keras_variants.monitoring.coverage import clean_width_rows, markdown_table
    from keras_variants.monitoring.ladders import measure
    from keras_variants.monitoring.stored import store_profile
    from keras_variants.registry.served_accuracy import ServedAccuracy, gate_inputs
    from keras_variants.registry.versions import REGISTERED_MODELS, model_path
    from keras_variants.reporting.monitoring_report import summary_lines, to_markdown
    from keras_variants.serving.answers import answers_frame, served_model_of
    from keras_variants.serving.saving import load_served

    client = MlflowClient(args.tracking_uri)
    section = [f"## Monitoring (`benchmarks/monitoring.py --rows {args.rows}`)", ""]
    examples: list[list[str]] = []
    digits: list[str] = []
    for dataset, name in REGISTERED_MODELS.items():
        version = client.get_model_version_by_alias(name, "champion")
        model = load_served(model_path(client, name, version.version))
        data = load_dataset(dataset, args.data_dir)
        rows = np.sort(np.random.default_rng(0).choice(len(data.test), args.rows, replace=False))
        scorer = ServedAccuracy(gate_inputs(data, rows))
        started, cpu = time.perf_counter(), time.process_time()
        answers = scorer.answers(model)
        served_seconds = time.perf_counter() - started
        served_cpu = time.process_time() - cpu
        served = served_model_of(model)
        profile, m = measure(served, scorer.gate.inputs, scorer.gate.labels,
                             answers_frame(dataset, answers), 0)  # fmt: skip
        if args.store_profile:
            store_profile(client, name, version.version, profile.to_bytes(), m)
            version = client.get_model_version(name, version.version)
        m["version"] = f"{name} v{version.version}"
        lines = [f"### {name}", *to_markdown(m)[1:]]
        timing = (
            f"- Served pass over the {args.rows:,} rows: {served_seconds:.1f} s "
            f"({served_cpu:.1f} s CPU); monitoring measurement: {m['seconds']} s "
            f"({m['cpu_seconds']} s CPU), on 2 cores shared with other work."
        )
        lines.insert(2, timing)
        print("\n".join(summary_lines(m)))
        header, rows = clean_width_rows(m)
        print("\n".join(markdown_table(header, rows)))
        section += lines
        examples += scored_examples(client, name, version, model, data, args.data_dir)
        if dataset == "mnist":
            digits = other_source_digits(model, data)
    section += [
        "### What `variants score` prints (the champion's stored profile)",
        "",
        "| input | true accuracy | the line's accuracy part |",
        "| --- | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in examples),
        "",
        *digits,
    ]
    print("\n".join(f"{row[0]}: {row[2]} (truth {row[1]})" for row in examples))
    print("\n".join(digits))
    write_section(args.output, BEGIN, END, "\n".join(section))


def scored_examples(client, name: str, version, model, data, data_dir: Path) -> list[list[str]]:
    """The issue's examples through the monitoring a scoring runs: each input, its true
    accuracy, and the accuracy part of the summary line."""
    from keras_variants.data.preprocessing import png_base64
    from keras_variants.model.uncertainty import rotated_digits
    from keras_variants.monitoring.check import monitor
    from keras_variants.monitoring.ladders import served_answers
    from keras_variants.monitoring.shifts import redrawn_digits
    from keras_variants.scoring.outputs import summary_line
    from keras_variants.serving.answers import classes_and_confidence, served_model_of

    served = served_model_of(model)
    rng = np.random.default_rng(5)
    pick = rng.choice(len(data.test), 500, replace=False)
    test = data.test.take(np.sort(pick))
    cases: list[tuple[str, list[str], np.ndarray]] = []
    if data.name == "mnist":
        pixels, labels = test.inputs, test.labels
        cases += [
            ("500 test digits", [png_base64(p) for p in pixels], labels),
            ("500 test digits turned 60°", [png_base64(p) for p in rotated_digits(pixels, 60)],
             labels),
            ("200 redrawn digits saved at 28 px",
             [png_base64(p) for p in redrawn_digits(pixels[:200], 28, rng)], labels[:200]),
            ("20 test digits", [png_base64(p) for p in pixels[:20]], labels[:20]),
        ]  # fmt: skip
    else:
        import pandas as pd

        frame = pd.read_parquet(data_dir / "imdb_reviews.parquet").query("split == 'test'")
        sample = frame.sample(500, random_state=3)
        positive = frame[frame["label"] == 1].sample(500, random_state=3)
        cases += [
            ("500 test reviews", sample["text"].tolist(), sample["label"].to_numpy()),
            ("500 positive reviews", positive["text"].tolist(), positive["label"].to_numpy()),
            ("20 test reviews", sample["text"].tolist()[:20], sample["label"].to_numpy()[:20]),
            ("2 test reviews", sample["text"].tolist()[:2], sample["label"].to_numpy()[:2]),
        ]
    out = []
    for label, inputs, truth in cases:
        answers = served_answers(served, inputs)
        found = monitor(client, name, version, model, inputs, answers)
        classes, _ = classes_and_confidence(data.name, answers)
        summary = {"rows": len(inputs), "rejected": 0, "drift": found.drift, **found.accuracy}
        line = summary_line(summary).split("; ", 1)[1].rsplit("; ", 1)[0]
        out.append([label, f"{np.mean(classes == truth):.3f}", line])
    return out


def other_source_digits(model, data) -> list[str]:
    """Accuracy of digits from other sources saved at 8, 28 and 64 pixels: scikit-learn's
    8x8 handwritten digits (saved as they are at 8 px, resized by the user to 28 and 64 px)
    and 1,000 redrawn MNIST test digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from keras_variants.data.preprocessing import png_base64
    from keras_variants.monitoring.shifts import redrawn_digits

    def accuracy(images: list[np.ndarray], labels: np.ndarray) -> float:
        inputs = [png_base64(p) for p in images]
        answers = []
        for start in range(0, len(inputs), 256):
            answers += model.predict(inputs[start : start + 256])
        return float(np.mean([a.predicted_class for a in answers] == labels))

    handwritten = load_digits()
    small = np.round(handwritten.images * 255 / 16).astype(np.uint8)
    rows = []
    for how, resample in (("Lanczos", Image.Resampling.LANCZOS),
                          ("bilinear", Image.Resampling.BILINEAR)):  # fmt: skip
        sized = [
            accuracy(
                [np.asarray(Image.fromarray(p).resize((side, side), resample)) for p in small],
                handwritten.target,
            )
            for side in SIDES
        ]
        rows.append(_row(f"scikit-learn's handwritten digits (1,797), resized {how}", sized))
    test = data.test.take(np.arange(1_000))
    sized = [
        accuracy(redrawn_digits(test.inputs, side, np.random.default_rng(0)), test.labels)
        for side in SIDES
    ]
    rows.append(_row("1,000 MNIST test digits redrawn (64x64 canvas) and saved", sized))
    return [
        "### Digits of another source at 8, 28 and 64 px (the MNIST champion)",
        "",
        "| digits | 8 px | 28 px | 64 px | spread |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]


def _row(label: str, accuracies: list[float]) -> str:
    cells = " | ".join(f"{a:.3f}" for a in accuracies)
    return f"| {label} | {cells} | {max(accuracies) - min(accuracies):.3f} |"


if __name__ == "__main__":
    main()
