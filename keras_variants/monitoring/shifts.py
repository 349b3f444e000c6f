"""The known shifts (the ladders' rungs): held-out rows changed the way new data could
differ from the training data, and sent as users send them (PNG files, review texts).

Digits: turned 15-90 degrees; pixel noise; drawn again as another source would draw them
(:func:`redrawn_digits`: thicker strokes, larger, off centre, on a bigger canvas, saved at
a size of the user's); images of clothing instead of digits (no true label). Reviews:
words shuffled (invisible to a bag-of-words model), cut short, thinned to a third of
their words, or replaced by random vocabulary words (no true label). Shifts that the
served model's preprocessing undoes are not rungs: an inverted or translated digit is
brought back to MNIST's layout (:func:`keras_variants.data.preprocessing.pixels_from_image`)
and scores as the clean one.
"""

from __future__ import annotations

import numpy as np

from keras_variants.config.variants import NUM_WORDS
from keras_variants.data.preprocessing import INDEX_FROM, MNIST_SIDE, png_base64, tokenize
from keras_variants.serving.answers import ServedModel

ROTATIONS = (15, 30, 45, 60, 90)
NOISE_LEVELS = (25, 50)  # standard deviation of the pixel noise, of 255
CUT_WORDS = (50, 20)
KEPT_SHARE = 1 / 3  # of a review's words, in order, for "a third of the words"
CANVAS = 64  # the side of the canvas redrawn digits are drawn on
REDRAWN_SIDE = 28  # the side redrawn digits are saved at, as a user resizes them
CLOTHING_STEP = "clothing-like images"  # another kind of image (model.uncertainty.clothing_like)
NO_TRUTH = ("random words", CLOTHING_STEP)  # inputs without a true label


def shifted_inputs(
    served: ServedModel, inputs: list[str], rng: np.random.Generator
) -> dict[str, list[str]]:
    """The shifted versions of ``inputs`` by rung name, as users would send them."""
    if served.variant.dataset == "mnist":
        from keras_variants.model.uncertainty import clothing_like, rotated_digits

        pixels = served.stored_inputs(inputs)
        out = {
            f"rotated {angle}°": [png_base64(p) for p in rotated_digits(pixels, angle)]
            for angle in ROTATIONS
        }
        for sigma in NOISE_LEVELS:
            out[f"pixel noise sd {sigma}"] = [png_base64(p) for p in noisy(pixels, sigma, rng)]
        out["redrawn digits"] = [png_base64(p) for p in redrawn_digits(pixels, REDRAWN_SIDE, rng)]
        return out | {CLOTHING_STEP: [png_base64(p) for p in clothing_like(len(inputs), rng)]}
    vocabulary = [w for w, rank in served.word_index.items() if rank + INDEX_FROM < NUM_WORDS]
    words = [tokenize(text) for text in inputs]
    out = {
        "shuffled words": [" ".join(rng.permutation(w)) for w in words],
        "random words": [" ".join(rng.choice(vocabulary, max(len(w), 1))) for w in words],
    }
    out |= {f"cut to {n} words": [" ".join(w[:n]) for w in words] for n in CUT_WORDS}
    out["a third of the words"] = [" ".join(thinned(w, KEPT_SHARE, rng)) for w in words]
    return out


def noisy(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 images with Gaussian noise of standard deviation ``sigma`` added, clipped."""
    noise = rng.normal(0.0, sigma, np.shape(pixels))
    return np.clip(np.rint(np.asarray(pixels, np.float64) + noise), 0, 255).astype(np.uint8)


def thinned(words: list[str], share: float, rng: np.random.Generator) -> list[str]:
    """About ``share`` of ``words`` (at least one), kept in their order."""
    if not words:
        return words
    keep = rng.random(len(words)) < share
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return [w for w, k in zip(words, keep, strict=True) if k]


def redrawn_digits(pixels: np.ndarray, side: int, rng: np.random.Generator) -> list[np.ndarray]:
    """MNIST digits drawn again as another source of handwriting would have them: each
    digit's box scaled to fill 60-95% of a 64x64 canvas (its aspect stretched up to 20%),
    its strokes thickened by 0-3 pixels, placed off centre, and the canvas saved at
    ``side`` x ``side`` (Pillow's antialiasing resize, as image editors shrink)."""
    from PIL import Image
    from scipy import ndimage

    out = []
    for image in np.asarray(pixels, dtype=np.uint8).reshape(-1, MNIST_SIDE, MNIST_SIDE):
        inked = image > 0
        if not inked.any():
            out.append(np.zeros((side, side), np.uint8))
            continue
        rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
        digit = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        long_side = CANVAS * rng.uniform(0.6, 0.95)
        stretch = rng.uniform(0.8, 1.2)
        scale = long_side / max(digit.shape[0], digit.shape[1] * stretch)
        height = min(CANVAS, max(1, round(digit.shape[0] * scale)))
        width = min(CANVAS, max(1, round(digit.shape[1] * scale * stretch)))
        drawn = np.asarray(
            Image.fromarray(digit).resize((width, height), Image.Resampling.BILINEAR), np.uint8
        )
        thickness = int(rng.integers(0, 4))
        if thickness:
            drawn = ndimage.grey_dilation(drawn, size=(thickness + 1, thickness + 1))
        canvas = np.zeros((CANVAS, CANVAS), np.uint8)
        top = int(rng.integers(0, CANVAS - height + 1))
        left = int(rng.integers(0, CANVAS - width + 1))
        canvas[top : top + height, left : left + width] = drawn
        saved = Image.fromarray(canvas).resize((side, side), Image.Resampling.LANCZOS)
        out.append(np.asarray(saved, np.uint8))
    return out
