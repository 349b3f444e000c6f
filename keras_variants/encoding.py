"""Turning compact stored examples into the float inputs and labels the lecture feeds Keras.

Pure NumPy, applied one batch at a time so that no 25,000 x 10,000 float matrix is ever built.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from keras_variants.datasets import Ragged

InputEncoding = Literal["pixels_flat", "pixels_image", "multi_hot"]
LabelEncoding = Literal["one_hot", "binary"]


def encode_inputs(
    inputs: np.ndarray | Ragged, encoding: InputEncoding, num_words: int = 10_000
) -> np.ndarray:
    """float32 model inputs: pixels scaled to [0, 1] (flat 784 or 28x28x1), or multi-hot rows."""
    if encoding == "multi_hot":
        assert isinstance(inputs, Ragged)
        return multi_hot(inputs, num_words)
    assert isinstance(inputs, np.ndarray)
    pixels = inputs.astype(np.float32) / 255.0
    if encoding == "pixels_flat":
        return pixels.reshape(len(inputs), -1)
    return pixels.reshape(*inputs.shape, 1)


def multi_hot(sequences: Ragged, num_words: int) -> np.ndarray:
    """One row per sequence with 1.0 at every word id it contains."""
    out = np.zeros((len(sequences), num_words), dtype=np.float32)
    rows = np.repeat(np.arange(len(sequences)), sequences.lengths)
    out[rows, sequences.values] = 1.0
    return out


def encode_labels(labels: np.ndarray, encoding: LabelEncoding, num_classes: int) -> np.ndarray:
    """One-hot float32 rows for categorical targets, float32 0/1 for binary ones."""
    if encoding == "one_hot":
        return np.eye(num_classes, dtype=np.float32)[labels.astype(np.int64)]
    return labels.astype(np.float32)
