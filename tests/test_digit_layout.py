"""Digits as users have them: any size and layout is brought to MNIST's layout by the served
model's one preprocessing, and MNIST's own images pass through unchanged."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_variants.data.preprocessing import (
    MNIST_CENTRE,
    fit_like_mnist,
    is_mnist_layout,
    pixels_from_image,
)
from keras_variants.monitoring.shifts import redrawn_digits


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _layout(pixels: np.ndarray) -> tuple[int, np.ndarray]:
    """The inked box's long side and the centre of mass (row, column) of a 28x28 image."""
    rows, cols = np.nonzero(pixels)
    index = np.arange(28)
    mass = pixels.sum()
    centre = np.array([pixels.sum(axis=1) @ index, pixels.sum(axis=0) @ index]) / mass
    return max(np.ptp(rows), np.ptp(cols)) + 1, centre


def _mnist(data_slices: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data_slices / "mnist.npz") as mnist:
        return (
            np.concatenate([mnist["x_train"], mnist["x_test"]]),
            np.concatenate([mnist["y_train"], mnist["y_test"]]),
        )


def _box(height: int, width: int, top: int, left: int, side: int = 28) -> np.ndarray:
    image = np.zeros((side, side), np.float64)
    image[top : top + height, left : left + width] = 200.0
    return image


@pytest.mark.parametrize(
    ("image", "mnist_like"),
    [
        (_box(20, 8, 4, 10), True),  # a "1": 20 high, centre (13.5, 13.5)
        (_box(19, 12, 5, 8), True),  # 19 high: 16 of MNIST's digits
        (_box(20, 8, 1, 10), False),  # the same "1" moved 3 pixels up
        (_box(26, 20, 1, 4), False),  # a drawing resized to 28x28: fills the field
        (_box(12, 6, 8, 11), False),  # drawn small in the middle
        (np.zeros((28, 28)), False),  # blank
        (_box(40, 16, 12, 24, side=64), False),  # another size is never as it is
    ],
)
def test_mnist_layout_is_the_box_and_the_centre(image: np.ndarray, mnist_like: bool) -> None:
    assert is_mnist_layout(image) is mnist_like


def test_mnist_digits_pass_through_unchanged(data_slices: Path) -> None:
    """What keeps the served accuracy on MNIST's test PNGs equal to the test accuracy."""
    images, _ = _mnist(data_slices)
    for image in images:
        np.testing.assert_array_equal(pixels_from_image(_png(image)), image)
        np.testing.assert_array_equal(pixels_from_image(_png(255 - image)), image)


def test_a_drawing_at_any_size_is_laid_out_like_mnist(data_slices: Path) -> None:
    """The same redrawn digits saved at 8, 28 and 64 pixels end as near-identical 28x28
    images laid out as MNIST's: the 28x28 resize is not taken as it is."""
    images, _ = _mnist(data_slices)
    digits = images[:40]
    by_side = {
        side: [
            pixels_from_image(_png(p))
            for p in redrawn_digits(digits, side, np.random.default_rng(3))
        ]
        for side in (8, 28, 64)
    }
    for side, fitted in by_side.items():
        for pixels in fitted:
            long_side, centre = _layout(pixels.astype(np.float64))
            assert long_side in (19, 20, 21), side  # Lanczos rings a pixel past the box
            assert np.abs(centre - MNIST_CENTRE).max() <= 0.5, side
    for a, b in ((28, 64), (8, 64)):
        correlation = [
            np.corrcoef(x.ravel(), y.ravel())[0, 1]
            for x, y in zip(by_side[a], by_side[b], strict=True)
        ]
        assert np.median(correlation) > (0.9 if a == 28 else 0.7), (a, b, correlation)


def test_the_fit_takes_off_a_grey_background_and_stretches_faint_ink() -> None:
    paper = np.full((100, 80), 60.0)  # a grey scan, already light on dark
    paper[20:80, 35:45] += 40.0  # a faint stroke
    pixels = fit_like_mnist(paper)
    assert pixels[0].max() == 0 and pixels.max() == 255
    long_side, centre = _layout(pixels.astype(np.float64))
    assert long_side == 20 and np.abs(centre - MNIST_CENTRE).max() <= 0.5
