"""The expectation suites: one expectation per line, each with the reason it exists.

Ranges for the distribution checks come from the real data sets (MNIST: mean pixel 33.3 of
255 and 81% blank pixels; IMDb: 234 words per review, about half of them among the 100 most
frequent words) and are wide enough for slices of a few hundred rows.
"""

from __future__ import annotations

import great_expectations.expectations as gxe
from great_expectations.expectations.expectation import Expectation

DIGITS = list(range(10))

# The suites keep one expectation per line, so they read like a checklist.
# fmt: off


def why(reason: str) -> dict[str, str]:
    return {"why": reason}


def mnist_suites() -> dict[str, list[Expectation]]:
    return {
        "mnist_splits": [
            gxe.ExpectColumnValuesToBeInSet(column="image_shape", value_set=["28x28"], meta=why("images are 28x28 pixels")),
            gxe.ExpectColumnValuesToBeInSet(column="x_dtype", value_set=["uint8"], meta=why("pixels are stored as uint8, as in Keras")),
            gxe.ExpectColumnValuesToBeInSet(column="y_dtype", value_set=["integer"], meta=why("labels are integers")),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="x_rows", column_B="y_rows", meta=why("every image has exactly one label")),
            gxe.ExpectColumnValuesToBeBetween(column="x_rows", min_value=1, meta=why("a split must not be empty")),
        ],
        "mnist_images": [
            gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=why("a split must not be empty")),
            gxe.ExpectColumnValuesToBeInSet(column="non_finite_pixels", value_set=[0], meta=why("no NaN or infinite pixels")),
            gxe.ExpectColumnValuesToBeBetween(column="pixel_min", min_value=0, meta=why("pixel intensities are 0-255")),
            gxe.ExpectColumnValuesToBeBetween(column="pixel_max", max_value=255, meta=why("pixel intensities are 0-255")),
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=DIGITS, meta=why("labels are digits 0-9")),
            gxe.ExpectColumnDistinctValuesToContainSet(column="label", value_set=DIGITS, meta=why("all ten digits are present")),
            gxe.ExpectColumnMeanToBeBetween(column="mean_intensity", min_value=25, max_value=42, meta=why("mean intensity of real MNIST is about 33 (a different image set is not)")),
            gxe.ExpectColumnMeanToBeBetween(column="blank_share", min_value=0.74, max_value=0.88, meta=why("about 81% of real MNIST pixels are blank")),
        ],
        "mnist_classes": [
            gxe.ExpectColumnValuesToBeBetween(column="share", min_value=0.04, meta=why("no digit is rarer than 4% (real MNIST: 9% or more)")),
        ],
        "mnist_encoded": [
            gxe.ExpectColumnValuesToBeBetween(column="pixels_flat_min", min_value=0.0, meta=why("dense inputs lie in [0, 1]")),
            gxe.ExpectColumnValuesToBeBetween(column="pixels_flat_max", max_value=1.0, meta=why("dense inputs lie in [0, 1]")),
            gxe.ExpectColumnValuesToBeInSet(column="pixels_flat_width", value_set=[784], meta=why("dense inputs are 784 values")),
            gxe.ExpectColumnValuesToBeBetween(column="pixels_image_min", min_value=0.0, meta=why("CNN inputs lie in [0, 1]")),
            gxe.ExpectColumnValuesToBeBetween(column="pixels_image_max", max_value=1.0, meta=why("CNN inputs lie in [0, 1]")),
            gxe.ExpectColumnValuesToBeInSet(column="label_sum", value_set=[1.0], meta=why("one-hot label rows sum to 1")),
        ],
    }


def imdb_suites(vocabulary_size: int, num_words: int) -> dict[str, list[Expectation]]:
    return {
        "imdb_splits": [
            gxe.ExpectColumnValuesToBeInSet(column="y_dtype", value_set=["integer"], meta=why("labels are integers")),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="x_rows", column_B="y_rows", meta=why("every review has exactly one label")),
            gxe.ExpectColumnValuesToBeBetween(column="x_rows", min_value=1, meta=why("a split must not be empty")),
        ],
        "imdb_reviews": [
            gxe.ExpectTableRowCountToBeBetween(min_value=1, meta=why("a split must not be empty")),
            gxe.ExpectColumnValuesToBeBetween(column="length", min_value=1, meta=why("no review is empty")),
            gxe.ExpectColumnValuesToBeInSet(column="non_integer_values", value_set=[0], meta=why("word ranks are whole numbers (no NaN or inf)")),
            gxe.ExpectColumnValuesToBeBetween(column="min_rank", min_value=1, meta=why("word ranks start at 1")),
            gxe.ExpectColumnValuesToBeBetween(column="max_rank", max_value=vocabulary_size, meta=why(f"word ranks lie within the {vocabulary_size}-word vocabulary")),
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1], meta=why("labels are 0 (negative) or 1 (positive)")),
            gxe.ExpectColumnDistinctValuesToContainSet(column="label", value_set=[0, 1], meta=why("both sentiments are present")),
            gxe.ExpectColumnMeanToBeBetween(column="label", min_value=0.3, max_value=0.7, meta=why("classes are roughly balanced (real IMDb: 50/50)")),
            gxe.ExpectColumnMeanToBeBetween(column="length", min_value=100, max_value=500, meta=why("real reviews average about 230 words")),
            gxe.ExpectColumnMeanToBeBetween(column="top100_word_share", min_value=0.35, max_value=0.75, meta=why("in English text about half the words are among the 100 most frequent")),
        ],
        "imdb_classes": [
            gxe.ExpectColumnValuesToBeBetween(column="share", min_value=0.3, meta=why("neither sentiment falls below 30%")),
        ],
        "imdb_encoded": [
            gxe.ExpectColumnValuesToBeBetween(column="multi_hot_min", min_value=0.0, meta=why("multi-hot inputs lie in [0, 1]")),
            gxe.ExpectColumnValuesToBeBetween(column="multi_hot_max", max_value=1.0, meta=why("multi-hot inputs lie in [0, 1]")),
            gxe.ExpectColumnValuesToBeInSet(column="multi_hot_width", value_set=[num_words], meta=why(f"inputs are {num_words}-word multi-hot vectors")),
            gxe.ExpectColumnValuesToBeBetween(column="max_word_id", min_value=0, max_value=num_words - 1, meta=why(f"word ids lie within [0, {num_words})")),
            gxe.ExpectColumnValuesToBeInSet(column="label_sum", value_set=[0.0, 1.0], meta=why("binary labels are 0.0 or 1.0")),
        ],
    }
# fmt: on
