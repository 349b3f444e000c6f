"""Input statistics per row, the same for the reference and for new data: what a review or
a digit image looks like to the model before it is scored.

Reviews (from their text and the model's word index): length in words, the share of words
outside the model's vocabulary, and how rare its known words are; digits (from the 28x28
pixels the model sees): ink intensity, ink share, centre of mass and bounding box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from keras_variants.config.variants import NUM_WORDS
from keras_variants.data.preprocessing import INDEX_FROM, tokenize

INK_LEVEL = 64  # of 255: a pixel darker than this is background
# What each feature is, in a sentence's words, and its unit.
DESCRIPTIONS = {
    "length": ("reviews", "shorter", "longer", "words"),
    "unknown_share": ("the share of words outside the vocabulary", "lower", "higher", ""),
    "word_rarity": ("the known words' mean log rank", "more common", "rarer", ""),
    "ink_intensity": ("the ink's mean brightness", "fainter", "brighter", "of 255"),
    "ink_share": ("the share of inked pixels", "lower", "higher", ""),
    "centre_row": ("the ink's centre of mass (row)", "higher up", "lower down", "px"),
    "centre_col": ("the ink's centre of mass (column)", "further left", "further right", "px"),
    "box_height": ("the digits' bounding box", "shorter", "taller", "px high"),
    "box_width": ("the digits' bounding box", "narrower", "wider", "px wide"),
}


def review_features(texts: Sequence[str], word_index: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Per review: ``length`` (words, as the tokenizer splits them), ``unknown_share`` (of
    those outside the model's ``NUM_WORDS`` vocabulary) and ``word_rarity`` (mean log rank
    of the words inside it; 0 when none is)."""
    lengths, unknown, rarity = [], [], []
    for text in texts:
        words = tokenize(text)
        ranks = np.array([word_index.get(w, NUM_WORDS) for w in words], dtype=np.float64)
        known = ranks[ranks + INDEX_FROM < NUM_WORDS]
        lengths.append(len(words))
        unknown.append(1.0 - len(known) / len(words) if words else 1.0)
        rarity.append(float(np.log1p(known).mean()) if len(known) else 0.0)
    return {
        "length": np.array(lengths, dtype=np.float64),
        "unknown_share": np.array(unknown),
        "word_rarity": np.array(rarity),
    }


def word_histogram(texts: Sequence[str], word_index: Mapping[str, int]) -> np.ndarray:
    """Counts of each vocabulary word (Keras ids below ``NUM_WORDS``; index 0 counts the
    words outside it) over ``texts``."""
    counts = np.zeros(NUM_WORDS, dtype=np.int64)
    for text in texts:
        for word in tokenize(text):
            rank = word_index.get(word)
            counts[
                rank + INDEX_FROM if rank is not None and rank + INDEX_FROM < NUM_WORDS else 0
            ] += 1
    return counts


def digit_features(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Per 28x28 uint8 image: ``ink_intensity`` (mean of inked pixels, 0-255),
    ``ink_share``, ``centre_row``/``centre_col`` (intensity-weighted, pixels) and
    ``box_height``/``box_width`` of the inked pixels (0 for a blank image)."""
    images = np.asarray(pixels, dtype=np.float64).reshape(len(pixels), 28, 28)
    ink = images > INK_LEVEL
    count = ink.sum(axis=(1, 2))
    mass = np.maximum(images.sum(axis=(1, 2)), 1e-9)
    index = np.arange(28, dtype=np.float64)
    rows_inked, cols_inked = ink.any(axis=2), ink.any(axis=1)

    def extent(inked: np.ndarray) -> np.ndarray:
        first = np.argmax(inked, axis=1)
        last = 27 - np.argmax(inked[:, ::-1], axis=1)
        return np.where(inked.any(axis=1), last - first + 1, 0).astype(np.float64)

    return {
        "ink_intensity": np.where(
            count > 0, (images * ink).sum(axis=(1, 2)) / np.maximum(count, 1), 0.0
        ),
        "ink_share": count / (28 * 28),
        "centre_row": (images.sum(axis=2) @ index) / mass,
        "centre_col": (images.sum(axis=1) @ index) / mass,
        "box_height": extent(rows_inked),
        "box_width": extent(cols_inked),
    }
