"""Monitoring benchmark: the drift signals' detection and false-alarm rates and the accuracy
estimate's error on the known shifts, for the registered champions, against the issue's
targets. Needs a store with champions (after `variants run --data-dir ../shared/data`);
re-measures each champion on ``--rows`` of its data's test rows (the registration measured
it on all of them), prints the figures and writes them into BENCHMARKS.md between the
`<!-- monitoring -->` markers:

    python benchmarks/monitoring.py [--tracking-uri sqlite:///$PWD/mlflow.db] [--rows 4000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sections import write_section  # benchmarks/ runs as scripts: its own folder

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- monitoring -->", "<!-- /monitoring -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{REPO / 'mlflow.db'}")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rows", type=int, default=4_000)
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()

    from mlflow.tracking import MlflowClient

    from keras_variants.data.datasets import load_dataset
    from keras_variants.monitoring.ladders import measure
    from keras_variants.registry.served_accuracy import ServedAccuracy, gate_inputs
    from keras_variants.registry.versions import REGISTERED_MODELS, model_path
    from keras_variants.reporting.monitoring_report import summary_lines, to_markdown
    from keras_variants.serving.answers import answers_frame, served_model_of
    from keras_variants.serving.saving import load_served

    client = MlflowClient(args.tracking_uri)
    section = [f"### Monitoring (`benchmarks/monitoring.py --rows {args.rows}`)", ""]
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
        _, m = measure(served, scorer.gate.inputs, scorer.gate.labels,
                       answers_frame(dataset, answers), 0)  # fmt: skip
        m["version"] = f"{name} v{version.version}"
        lines = to_markdown(m)
        timing = (
            f"- Served pass over the {args.rows:,} rows: {served_seconds:.1f} s "
            f"({served_cpu:.1f} s CPU); monitoring measurement: {m['seconds']} s "
            f"({m['cpu_seconds']} s CPU), on 2 cores shared with other work."
        )
        lines.insert(2, timing)
        print("\n".join(summary_lines(m)))
        section += lines
    write_section(args.output, BEGIN, END, "\n".join(section))


if __name__ == "__main__":
    main()
