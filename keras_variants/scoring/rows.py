"""One row of a scoring input, kept or left out: a review text or an image file checked
against the served model's limits (kept: its id and the string sent to the model; else a
:class:`Rejected` row with the reason in the user's terms), and its label cell read as a
class. :mod:`keras_variants.scoring.inputs` reads whole files and folders into these rows.
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from keras_variants.errors import InputError
from keras_variants.serving.limits import MAX_IMAGE_BYTES, MAX_TEXT_CHARS  # checked per row

Kind = Literal["text", "image"]
SENTIMENT_LABELS = {"0": 0, "1": 1, "negative": 0, "positive": 1}


@dataclass(frozen=True)
class Rejected:
    """A row that was not scored: its id and why, in the user's terms."""

    id: str
    reason: str


@dataclass
class ScoringInput:
    """One input, read and checked: the rows to send and the rows left out.

    ``inputs[i]`` (a review text, or an image file base64-encoded) is row ``ids[i]``;
    ``labels[i]`` is its label or None (``labels`` is None without a label column)."""

    path: Path
    kind: Kind
    ids: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    labels: list[int | None] | None = None
    rejected: list[Rejected] = field(default_factory=list)
    sha256: str = ""  # of the file, or of every file read (a folder, a table's images)

    @property
    def rows_read(self) -> int:
        return len(self.ids) + len(self.rejected)


def add_image(read: ScoringInput, row_id: str, file: Path, digest: hashlib._Hash) -> bool:
    """Add ``file`` as row ``row_id``, or a rejected row saying why it cannot be sent."""
    reason = None
    try:
        size = file.stat().st_size
        if size > MAX_IMAGE_BYTES:
            reason = f"the file has {size:,} bytes, over the limit of {MAX_IMAGE_BYTES:,}"
        else:
            data = file.read_bytes()
            digest.update(data)
            reason = not_an_image(data)
    except FileNotFoundError:
        reason = "no such file"
    except IsADirectoryError:
        reason = f"{file} is a folder, not an image file"
    except OSError as exc:
        reason = f"cannot read the file ({exc.strerror or type(exc).__name__})"
    if reason is not None:
        read.rejected.append(Rejected(row_id, reason))
        return False
    read.ids.append(row_id)
    read.inputs.append(base64.b64encode(data).decode("ascii"))
    return True


def not_an_image(data: bytes) -> str | None:
    """Why ``data`` is not an image the served model takes, or None. Reads the header only
    (:func:`~keras_variants.data.preprocessing.opened_image`, the served model's own check):
    the served model decodes the pixels (and rejects what it cannot)."""
    from keras_variants.data.preprocessing import opened_image

    if not data:
        return "the file is empty"
    try:
        with opened_image(data):
            return None
    except InputError as exc:
        return str(exc).replace("the bytes are not", "not")


def add_text(read: ScoringInput, row_id: str, text: object) -> bool:
    reason = None
    if missing(text):
        reason = "no text"
    elif not isinstance(text, str):
        reason = f"the text is a {type(text).__name__}, not a string"
    elif not text.strip():
        reason = "the text is empty"
    elif len(text) > MAX_TEXT_CHARS:
        reason = f"the text has {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,}"
    if reason is not None:
        read.rejected.append(Rejected(row_id, reason))
        return False
    read.ids.append(row_id)
    read.inputs.append(text)
    return True


def missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def label_of(value: object, dataset: str) -> tuple[int | None, str | None]:
    """A label cell as a class (None when empty), or the reason it is not one."""
    if missing(value) or (isinstance(value, str) and not value.strip()):
        return None, None
    text = str(value).strip().lower()
    if dataset == "imdb":
        number = _whole(text)
        key = str(number) if number is not None else text
        if key in SENTIMENT_LABELS:
            return SENTIMENT_LABELS[key], None
        return None, "the label is not 0, 1, negative or positive"
    number = _whole(text)
    if number is not None and 0 <= number <= 9:
        return number, None
    return None, "the label is not a digit 0-9"


def _whole(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None
