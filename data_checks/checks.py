"""Which tables and suites apply to which data set, in the order they are checked."""

from __future__ import annotations

from data_checks.runner import ValidationOutcome, validate_tables
from data_checks.suites import imdb_suites, mnist_suites
from data_checks.tables import encoded_tables, imdb_tables, mnist_tables
from keras_variants.config.variants import NUM_WORDS
from keras_variants.data.datasets import Dataset
from keras_variants.lanes.call import Call, call_here


def validate_dataset(
    data: Dataset, num_words: int = NUM_WORDS, call: Call = call_here
) -> ValidationOutcome:
    """Raw shape, label and distribution checks, then (only if they pass) the checks on
    preprocessed inputs, which cannot even be computed from out-of-range labels; ``call``
    runs the encoding (in a lane process, for a pipeline run)."""
    if data.name == "mnist":
        suites, raw = mnist_suites(), mnist_tables(data)
    else:
        suites, raw = imdb_suites(data.vocabulary_size or 0, num_words), imdb_tables(data)
    outcome = validate_tables(raw, suites)
    if not outcome.success:
        return outcome
    encoded = validate_tables(encoded_tables(data, call), suites)
    return ValidationOutcome(
        encoded.success,
        encoded.failures,
        outcome.checked + encoded.checked,
        outcome.results | encoded.results,
    )
