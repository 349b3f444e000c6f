"""How an example becomes model input: the one definition that training, the data checks,
the gate and the served model all call.

Three steps, each written once:

1. what a user has to the stored form: review text to word ranks (the tokenizer that made
   ``imdb.npz``), a digit image of any size and layout to 28x28 uint8 pixels laid out the
   way MNIST's digits were (MNIST's own images pass as they are);
2. word ranks to Keras word ids (``keras.datasets.imdb.load_data(num_words=...)``'s rules);
3. the stored form to float model inputs, as TensorFlow ops so that ``tf.data`` runs them
   without the GIL: multi-hot rows of word ids, or pixels scaled to [0, 1]. IMDb trains on
   each review's set of distinct word ids instead (:func:`word_sets`), the columns its
   multi-hot row marks, as a sparse tensor: training never builds a dense multi-hot row.

TensorFlow is imported only by step 3's functions, so reading and checking data need not
pay for it. Over 300 lines on purpose: every step of every data set in one file is what
keeps training, the checks and serving from drifting apart.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from keras_variants.config.variants import DatasetSpec, VariantConfig
from keras_variants.data.layout import MNIST_BOX, MNIST_CENTRE, MNIST_CENTRE_TOLERANCE, MNIST_SIDE
from keras_variants.data.ragged import Ragged
from keras_variants.errors import InputError

if TYPE_CHECKING:
    import PIL.Image
    import tensorflow as tf

# Keras's load_data conventions, so a local folder, the download and served text agree.
START_CHAR, OOV_CHAR, INDEX_FROM = 1, 2, 3
# The tokenizer that made the word ranks of the offline mirror (its README): lower case,
# HTML line breaks as spaces, runs of letters and digits with inner apostrophes.
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
MAX_IMAGE_PIXELS = 4096 * 4096


def tokenize(text: str) -> list[str]:
    """The words of a review, as the data's tokenizer saw them."""
    return TOKEN.findall(text.replace("<br />", " ").lower())


def ranks_from_texts(texts: Sequence[str], word_index: Mapping[str, int]) -> Ragged:
    """Word ranks of each text; words the index lacks are dropped, as in the stored data."""
    lookup = word_index.get
    rows = [[r for r in map(lookup, tokenize(text)) if r is not None] for text in texts]
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    values = np.fromiter((r for row in rows for r in row), dtype=np.float64, count=lengths.sum())
    return Ragged(values, np.concatenate([[0], np.cumsum(lengths)]))


def keras_word_ids(ranks: Ragged, num_words: int) -> Ragged:
    """Keras's id rules: shift by index_from, prepend start_char, cap at num_words with oov."""
    finite = np.nan_to_num(ranks.values, nan=0.0, posinf=0.0, neginf=0.0)
    ids = finite.astype(np.int64) + INDEX_FROM
    ids[(ids >= num_words) | (ids < INDEX_FROM)] = OOV_CHAR
    values = np.insert(ids, ranks.offsets[:-1], START_CHAR).astype(np.int32)
    offsets = ranks.offsets + np.arange(len(ranks.offsets))
    return Ragged(values, offsets)


def texts_from_word_ids(ids: Ragged, word_index: Mapping[str, int], num_words: int) -> list[str]:
    """Review texts that tokenize back to exactly ``ids``: the inverse of the two steps above.

    Out-of-vocabulary ids become a word ranked past ``num_words``, which maps back to oov.
    """
    words = {rank + INDEX_FROM: word for word, rank in word_index.items()}
    rare = next((w for w, rank in word_index.items() if rank + INDEX_FROM >= num_words), None)
    if rare is None:
        raise InputError("the word index has no word past num_words to stand for oov")
    words[OOV_CHAR] = rare
    return [
        " ".join(words[i] for i in ids.values[start + 1 : stop])  # skip start_char
        for start, stop in zip(ids.offsets[:-1], ids.offsets[1:], strict=True)
    ]


NOT_AN_IMAGE = "the bytes are not an image Pillow can read (PNG, JPEG, ...)"


@contextmanager
def opened_image(data: bytes) -> Iterator[PIL.Image.Image]:
    """The image in ``data`` with its header read and no pixel decoded yet, or InputError
    saying why not: not an image, or one declaring more pixels than ``MAX_IMAGE_PIXELS``
    (a few bytes can declare 20000x20000: Pillow's own bomb check raises an error of its
    own for those, which is one more bad input here, never a crash)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise InputError(_too_large("more than 4096x4096")) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(NOT_AN_IMAGE) from None
    with image:
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise InputError(_too_large(f"{image.width}x{image.height}"))
        yield image


def _too_large(size: str) -> str:
    return f"the image is {size} pixels, over the limit of 4096x4096; send a smaller image"


def pixels_from_image(data: bytes) -> np.ndarray:
    """A digit image as MNIST stores digits: 28x28 uint8, light digit on black, the ink's
    bounding box fitted into 20x20 (aspect kept) and centred by its centre of mass.

    Any format Pillow reads, grayscale or colour, any size up to 4096x4096, any layout. A
    light background is inverted. An image already laid out as MNIST's are
    (:func:`is_mnist_layout`: every one of MNIST's 70,000 digits is) is taken as it is, so
    MNIST's own files score exactly as the stored pixels do; any other image (another
    size, a 28x28 resize of a larger drawing, a digit off centre or too small) is laid out
    the way MNIST's digits were (:func:`fit_like_mnist`).
    """
    from PIL import Image

    with opened_image(data) as image:
        try:
            gray = np.asarray(image.convert("L"), dtype=np.float64)
        except (OSError, ValueError, Image.DecompressionBombError):  # a truncated file
            raise InputError(NOT_AN_IMAGE) from None
    gray = light_on_dark(gray)
    if is_mnist_layout(gray):
        return gray.round().astype(np.uint8)
    return fit_like_mnist(gray)


def light_on_dark(gray: np.ndarray) -> np.ndarray:
    """``gray`` (0-255) with a light background inverted: the border's median says which
    is the background."""
    return 255.0 - gray if _border_median(gray) > 127 else gray


def _border_median(gray: np.ndarray) -> float:
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    middle = len(border) // 2
    ordered = np.partition(border, [middle - 1, middle])
    return float(ordered[middle] if len(border) % 2 else ordered[middle - 1 : middle + 1].mean())


def _centre_of_mass(image: np.ndarray) -> np.ndarray:
    """(row, column) of ``image``'s intensity-weighted centre."""
    mass = image.sum()
    rows = np.arange(image.shape[0], dtype=np.float64)
    cols = np.arange(image.shape[1], dtype=np.float64)
    return np.array([image.sum(axis=1) @ rows, image.sum(axis=0) @ cols]) / mass


def is_mnist_layout(gray: np.ndarray) -> bool:
    """Whether a light-on-dark image is laid out as MNIST's digits are: 28x28, its inked
    (non-zero) pixels' bounding box 19 or 20 pixels on its long side, and its centre of
    mass within ``MNIST_CENTRE_TOLERANCE`` of ``MNIST_CENTRE`` on both axes. Measured on
    all 70,000 MNIST digits: every one has such a box (16 at 19) and a centre within 0.52
    pixels of (14, 14); a user's 28x28 resize fills more of the field, a digit drawn off
    centre or small misses the centre or the box."""
    if gray.shape != (MNIST_SIDE, MNIST_SIDE):
        return False
    inked = gray > 0
    if not inked.any():
        return False
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    long_side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    if long_side not in (MNIST_BOX - 1, MNIST_BOX):
        return False
    centre = _centre_of_mass(gray)
    return bool(np.all(np.abs(centre - MNIST_CENTRE) <= MNIST_CENTRE_TOLERANCE))


def fit_like_mnist(gray: np.ndarray) -> np.ndarray:
    """A light-on-dark image of any size laid out as MNIST's digits were: the background
    level (the border's median) taken off, the ink (above a fifth of the brightest pixel)
    cropped to its bounding box, scaled into 20x20 keeping its aspect ratio (Pillow's
    Lanczos, which antialiases when it shrinks), its brightest pixel stretched to 255, and
    shifted by whole pixels so its centre of mass lies at ``MNIST_CENTRE`` of the 28x28
    field."""
    from PIL import Image

    gray = np.clip(gray - _border_median(gray), 0.0, 255.0)
    field = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float64)
    if gray.max() <= 0:
        return field.astype(np.uint8)
    ink = gray > 0.2 * gray.max()
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    digit = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = MNIST_BOX / max(digit.shape)
    size = (max(1, round(digit.shape[1] * scale)), max(1, round(digit.shape[0] * scale)))
    box = np.asarray(
        Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS),
        dtype=np.float64,
    )
    box = np.clip(box, 0.0, None)
    if box.max() > 0:
        box *= 255.0 / box.max()
    top, left = (MNIST_SIDE - box.shape[0]) // 2, (MNIST_SIDE - box.shape[1]) // 2
    field[top : top + box.shape[0], left : left + box.shape[1]] = box
    if field.sum() > 0:
        down, right = np.round(MNIST_CENTRE - _centre_of_mass(field)).astype(int)
        field = _shifted(field, int(down), int(right))
    return np.clip(field, 0, 255).round().astype(np.uint8)


def _shifted(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """``image`` moved by whole pixels, black where it moves in nothing."""
    out = np.zeros_like(image)
    height, width = image.shape
    if abs(down) >= height or abs(right) >= width:
        return out
    out[max(down, 0) : height + min(down, 0), max(right, 0) : width + min(right, 0)] = image[
        max(-down, 0) : height + min(-down, 0), max(-right, 0) : width + min(-right, 0)
    ]
    return out


def png_base64(pixels: np.ndarray) -> str:
    """A uint8 grayscale image as base64-encoded PNG, the form the served MNIST model takes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_base64(text: str) -> bytes:
    """The bytes of a base64 string (an image file as the served MNIST model takes it)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(
            "the string is not base64: send the image file's bytes base64-encoded"
        ) from exc


def stored_tensor(inputs: np.ndarray | Ragged) -> tf.Tensor | tf.RaggedTensor:
    """Stored examples as one tensor: word ids as a ragged tensor, pixels as they are."""
    import tensorflow as tf

    if isinstance(inputs, Ragged):
        # 16-bit word ids where they fit (a vocabulary under 32,768 words): half the memory
        # of a data set's tensors; encode_batch widens each batch.
        values = inputs.values
        fits = not values.size or (values.min() >= 0 and values.max() <= np.iinfo(np.int16).max)
        return tf.RaggedTensor.from_row_splits(
            np.asarray(values, np.int16 if fits else np.int32),
            np.asarray(inputs.offsets, np.int64),
        )
    return tf.constant(inputs)


def encode_batch(batch: tf.Tensor | tf.RaggedTensor, variant: VariantConfig) -> tf.Tensor:
    """float32 model inputs from a batch of stored examples: multi-hot rows as wide as the
    variant's input for word ids, pixels scaled to [0, 1] in the variant's input shape."""
    import tensorflow as tf

    if variant.input_encoding == "multi_hot":
        width = variant.input_shape[0]
        encoded = tf.math.bincount(
            tf.cast(batch, tf.int32),
            minlength=width,
            maxlength=width,
            dtype=tf.float32,
            binary_output=True,
            axis=-1,
        )
    else:
        encoded = tf.cast(batch, tf.float32) / 255.0
    return tf.reshape(encoded, (-1, *variant.input_shape))


def word_sets(ids: Ragged, width: int) -> Ragged:
    """Each row's distinct word ids below ``width``, ascending: the columns its multi-hot row
    of that width marks (:func:`encode_batch`), without the thousands of zeros around them.

    What IMDb trains on (:mod:`keras_variants.model.word_sets`): a review has ~130 distinct
    words of 10,000. Rows and ids become one sortable key each, so the whole split takes
    one sort, not a loop over rows.
    """
    values = np.asarray(ids.values, np.int64)
    rows = np.repeat(np.arange(len(ids), dtype=np.int64), ids.lengths)
    kept = (values >= 0) & (values < width)
    # int32 keys where they fit: NumPy sorts them faster than int64
    key_type = np.int32 if len(ids) * width < np.iinfo(np.int32).max else np.int64
    keys = np.sort((rows[kept] * width + values[kept]).astype(key_type), kind="stable")
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys
    counts = np.bincount(keys // width, minlength=len(ids))
    id_type = np.int16 if width - 1 <= np.iinfo(np.int16).max else np.int32
    return Ragged((keys % width).astype(id_type), np.concatenate([[0], np.cumsum(counts)]))


def encode_word_set_batch(batch: tf.RaggedTensor, width: int) -> tf.SparseTensor:
    """A batch of :func:`word_sets` rows as the multi-hot rows they stand for, sparse: 1.0 at
    (row, word id) for each word of each row, in a ``(rows, width)`` SparseTensor."""
    import tensorflow as tf

    ids = tf.cast(batch.values, tf.int64)
    return tf.SparseTensor(
        indices=tf.stack([batch.value_rowids(), ids], axis=1),
        values=tf.ones_like(ids, dtype=tf.float32),
        dense_shape=tf.stack([batch.nrows(), tf.constant(width, tf.int64)]),
    )


def encode_label_batch(labels: tf.Tensor, head: DatasetSpec) -> tf.Tensor:
    """float32 targets: one-hot rows for categorical heads, 0/1 for binary ones."""
    import tensorflow as tf

    if head.label_encoding == "one_hot":
        return tf.one_hot(labels, head.num_classes, dtype=tf.float32)
    return tf.cast(labels, tf.float32)


def encode_inputs(inputs: np.ndarray | Ragged, variant: VariantConfig) -> np.ndarray:
    """:func:`encode_batch` on a whole array of stored examples, as NumPy."""
    return encode_batch(stored_tensor(inputs), variant).numpy()


def encode_labels(labels: np.ndarray, head: DatasetSpec) -> np.ndarray:
    """:func:`encode_label_batch` on a whole array of labels, as NumPy."""
    import tensorflow as tf

    return encode_label_batch(tf.constant(labels.astype(np.int64)), head).numpy()
