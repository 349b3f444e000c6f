"""What ``variants score`` reads: a folder of images, a ``.txt`` file (one review per line),
or a ``.csv`` / ``.parquet`` table with a ``text`` or ``image`` column and an optional
``label`` column; turned into row ids, the strings the served model takes (review texts,
base64 image files), labels, and the rows it cannot use with the reason.

A file or folder that cannot be scored at all is an :class:`InputError` naming it and what
to do; a bad row is a :class:`Rejected` row, and the rest is scored.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from keras_variants.errors import InputError
from keras_variants.scoring.rows import (
    Kind,
    Rejected,
    ScoringInput,
    add_image,
    add_text,
    label_of,
    missing,
    not_an_image,
)
from keras_variants.serving.limits import MAX_IMAGE_BYTES

TABLE_SUFFIXES = (".csv", ".parquet")
KIND_OF_DATASET: dict[str, Kind] = {"imdb": "text", "mnist": "image"}


def input_kind(path: Path, wanted: Kind = "text") -> Kind:
    """What ``path`` holds, checked in a moment and before anything heavy is imported: it
    exists, is of a kind this reads, a ``.txt`` is UTF-8 text with a line in it, a table has
    a column to score (with both, ``wanted``), a folder has an image in it. The full read is
    :func:`read_input`'s."""
    if path.is_dir():
        _first_image(path)
        return "image"
    if not path.exists():
        raise InputError(
            f"{path}: no such file or folder; pass a folder of images, or a .txt, .csv or "
            ".parquet file"
        )
    if path.suffix.lower() == ".txt":
        _text_lines(path)
        return "text"
    if path.suffix.lower() in TABLE_SUFFIXES:
        return _table_kind(path, _table_columns(path), wanted)
    raise InputError(
        f"{path}: cannot score a {path.suffix or 'suffix-less'} file; pass a folder of "
        "images, or a .txt, .csv or .parquet file"
    )


def check_input(path: Path, dataset: str, model: str) -> Kind:
    """What ``path`` holds for ``model`` (a model of ``dataset``): :func:`input_kind`'s
    checks, and that it holds what the model takes."""
    wanted = KIND_OF_DATASET[dataset]
    kind = input_kind(path, wanted)
    if kind != wanted:
        raise InputError(_wrong_kind(path, kind, model))
    return kind


def read_input(path: Path, dataset: str, model: str) -> ScoringInput:
    """Read ``path`` for ``model`` (a model of ``dataset``: ``imdb`` or ``mnist``)."""
    kind = check_input(path, dataset, model)
    if path.is_dir():
        read = _read_folder(path)
    elif kind == "text" and path.suffix.lower() == ".txt":
        read = _read_lines(path)
    else:
        read = _read_table(path, kind, dataset)
    if not read.ids:
        raise InputError(_nothing_usable(read))
    return read


def _table_kind(path: Path, columns: list[str], wanted: Kind) -> Kind:
    """The column a table is scored by: ``text`` or ``image`` (with both, the model's)."""
    present = [c for c in ("text", "image") if c in columns]
    if not present:
        shown = ", ".join(columns[:10]) or "none"
        raise InputError(
            f"{path}: no 'text' or 'image' column (its columns: {shown}); name the column of "
            "reviews 'text', or the column of image paths 'image'"
        )
    return wanted if len(present) == 2 else present[0]  # type: ignore[return-value]


def _table_columns(path: Path) -> list[str]:
    """A table's column names, from its header (CSV) or schema (Parquet) only."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            return [str(c) for c in pd.read_csv(path, nrows=0).columns]
        import pyarrow.parquet as pq

        return [str(c) for c in pq.read_schema(path).names]
    except Exception as exc:  # pandas and pyarrow raise many kinds for a malformed file
        raise InputError(_unreadable_table(path, exc)) from None


def _unreadable_table(path: Path, exc: Exception) -> str:
    what = "CSV" if path.suffix.lower() == ".csv" else "Parquet"
    detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return f"{path}: cannot read it as {what} ({detail})"


def _folder_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, hidden ones aside, in name order."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _first_image(folder: Path) -> None:
    """Raise InputError unless ``folder`` has a file Pillow can open (headers only)."""
    files = _folder_files(folder)
    if not files:
        raise InputError(f"{folder}: the folder has no files; put the images to score in it")
    for file in files:
        try:
            if file.stat().st_size <= MAX_IMAGE_BYTES and not_an_image(file.read_bytes()) is None:
                return
        except OSError:
            continue
    raise InputError(
        f"{folder}: none of its {len(files):,} files is an image Pillow can read; put PNG "
        "or JPEG images in it"
    )


def _wrong_kind(path: Path, kind: Kind, model: str) -> str:
    if kind == "image":
        return (
            f"{path} holds images, and {model} scores review texts: pass "
            "--model mnist-classifier, or a .txt file or a table with a 'text' column"
        )
    return (
        f"{path} holds review texts, and {model} scores digit images: pass "
        "--model imdb-sentiment, or a folder of images or a table with an 'image' column"
    )


def _nothing_usable(read: ScoringInput) -> str:
    first = read.rejected[0]
    what = "image" if read.kind == "image" else "review"
    return (
        f"{read.path}: no row can be scored ({len(read.rejected):,} rejected; the first, "
        f"{first.id}: {first.reason}); it needs at least one readable {what}"
    )


def _read_folder(folder: Path) -> ScoringInput:
    """Every file under ``folder`` (hidden ones aside), in name order, as an image row."""
    files = _folder_files(folder)
    read = ScoringInput(folder, "image")
    digest = hashlib.sha256()
    for file in files:
        name = file.relative_to(folder).as_posix()
        digest.update(name.encode() + b"\0")
        add_image(read, name, file, digest)
    read.sha256 = digest.hexdigest()
    return read


def _read_lines(path: Path) -> ScoringInput:
    """One review per line; the id of a row is its line number (from 1)."""
    raw, lines = _text_lines(path)
    read = ScoringInput(path, "text", sha256=hashlib.sha256(raw).hexdigest())
    for number, line in enumerate(lines, start=1):
        add_text(read, str(number), line)
    return read


def _text_lines(path: Path) -> tuple[bytes, list[str]]:
    """A ``.txt`` file's bytes and its lines, or InputError: not UTF-8 (which line), or
    empty."""
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line} is not UTF-8 text; save the file as UTF-8") from None
    # Lines end at "\n" (or "\r\n") only: a review may hold other separators Python's
    # splitlines() would cut at.
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line's own end
    if not lines:
        raise InputError(f"{path}: the file is empty; put one review per line in it")
    return raw, lines


def _read_table(path: Path, kind: Kind, dataset: str) -> ScoringInput:
    """A table with a ``text`` or ``image`` column (image paths relative to the file) and
    optionally ``label`` and ``id``; a row's id is its ``id``, else its image path as
    written, else its row number (from 1, the header not counted)."""
    import pandas as pd

    raw = _read_bytes(path)
    digest = hashlib.sha256(raw)
    try:
        if path.suffix.lower() == ".csv":  # cells as written: ids and labels stay text
            frame = pd.read_csv(io.BytesIO(raw), dtype=object, keep_default_na=False)
        else:
            frame = pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # pandas and pyarrow raise many kinds for a malformed file
        raise InputError(_unreadable_table(path, exc)) from None
    columns = [str(c) for c in frame.columns]
    column = kind
    if frame.empty:
        raise InputError(f"{path}: the table has no rows; put the {column}s to score in it")
    read = ScoringInput(path, kind)
    has_labels = "label" in columns
    if has_labels:
        read.labels = []
    ids = frame["id"].tolist() if "id" in columns else [None] * len(frame)
    labels = frame["label"].tolist() if has_labels else [None] * len(frame)
    for number, (value, row_id, label) in enumerate(
        zip(frame[column].tolist(), ids, labels, strict=True), start=1
    ):
        if not missing(row_id) and str(row_id).strip():
            name = str(row_id).strip()
        elif kind == "image" and isinstance(value, str) and value.strip():
            name = value
        else:
            name = str(number)
        parsed, label_problem = label_of(label, dataset) if has_labels else (None, None)
        if label_problem:
            read.rejected.append(Rejected(name, label_problem))
            continue
        if kind == "text":
            added = add_text(read, name, value)
        elif missing(value) or not str(value).strip():
            read.rejected.append(Rejected(name, "no image path"))
            added = False
        else:
            file = Path(str(value)).expanduser()
            digest.update(str(value).encode() + b"\0")
            added = add_image(
                read, name, file if file.is_absolute() else path.parent / file, digest
            )
        if added and read.labels is not None:
            read.labels.append(parsed)
    read.sha256 = digest.hexdigest()
    return read


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
