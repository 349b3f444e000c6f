"""The gate's memory of a version's answers: whether it is right on each test input, kept
with the version so that a champion is scored once: the packed answers are an artifact of
the version's run (``gate_answers/<scorer key>.txt``; 25,000 reviews take 4 KB) and the
version's tag ``gate.correct.<scorer key>`` holds their seal (32 hex digits). A version
with no run, and memos written before, keep the answers in the tag, before the seal.

A memo is evidence only about the files it was computed from, with the scorer it was
computed by. So it is sealed: its value ends in a SHA-256 over the version's recorded file
digests (``files.sha256``, what every load checks the files against), the scorer's key (a
digest of the test inputs, their labels and the code that scores them) and the answers. A
memo whose seal does not match (its bits edited, copied from another version or scorer,
written for other files, or written before memos were sealed) is not used: the gate scores
the version again and writes a new one.

The seal is a plain digest, not a signature: it binds the memo to the files and scorer, at
the same trust as the file record it names (whoever may rewrite a version's tags may rewrite
that record too).
"""

from __future__ import annotations

import base64
import hashlib
import logging

import numpy as np
from mlflow.tracking import MlflowClient

from keras_variants.registry import integrity
from keras_variants.registry.versions import artifact_text

MEMO_PREFIX = "gate.correct."
ANSWERS_FOLDER = "gate_answers"  # in the version's run: <scorer key>.txt
SEAL_CHARS = 32  # hex digits of the SHA-256 kept


def memo_tag(key: str) -> str:
    return f"{MEMO_PREFIX}{key}"


def answers_path(key: str) -> str:
    return f"{ANSWERS_FOLDER}/{key}.txt"


def pack_correct(correct: np.ndarray) -> str:
    """Per-input correctness as ``"<count>:<base64 of the packed bits>"`` (25,000 test
    reviews take 4,174 characters)."""
    bits = np.packbits(np.asarray(correct, bool))
    return f"{correct.size}:{base64.b64encode(bits.tobytes()).decode()}"


def unpack_correct(packed: str) -> np.ndarray:
    """The bools of :func:`pack_correct`'s text (a seal after it is ignored)."""
    count, bits = packed.split(":")[:2]
    return np.unpackbits(np.frombuffer(base64.b64decode(bits), np.uint8), count=int(count))


def seal(files_record: str, key: str, packed: str) -> str:
    """The digest that binds ``packed`` answers to a version's file record and a scorer."""
    digest = hashlib.sha256()
    for part in (files_record, key, packed):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:SEAL_CHARS]


def sealed(files_record: str, key: str, correct: np.ndarray) -> str:
    """The memo's value: the packed answers, then their seal."""
    packed = pack_correct(correct)
    return f"{packed}:{seal(files_record, key, packed)}"


def recall(tags: dict[str, str], key: str, stored: str | None = None) -> np.ndarray | None:
    """The answers remembered for the scorer ``key`` by a version with these ``tags`` (and
    ``stored``, the text of its answers artifact, when the tag holds the seal alone), if the
    memo's seal matches the version's file record; None otherwise (nothing remembered, or a
    memo not to be trusted)."""
    memo, files = tags.get(memo_tag(key)), tags.get(integrity.FILES_TAG)
    if memo is None or files is None:
        return None
    packed, _, found = memo.rpartition(":")
    if not packed:  # the seal alone: the answers are the artifact's
        packed = stored or ""
    if packed.count(":") != 1 or found != seal(files, key, packed):
        return None
    try:
        return unpack_correct(packed).astype(bool)
    except ValueError:  # bad base64 or count, under a matching seal: not trusted either
        return None


def remember(client: MlflowClient, name: str, version: str, key: str, correct: np.ndarray) -> None:
    """Write the sealed memo of ``correct`` for the version (which has its file record: it
    was just loaded through the files check): the answers into its run, the seal on it."""
    found = client.get_model_version(name, version)
    files = found.tags[integrity.FILES_TAG]
    if not found.run_id:
        client.set_model_version_tag(name, version, memo_tag(key), sealed(files, key, correct))
        return
    packed = pack_correct(correct)
    client.log_text(found.run_id, packed, answers_path(key))
    client.set_model_version_tag(name, version, memo_tag(key), seal(files, key, packed))


def remembered(client: MlflowClient, name: str, version: str, key: str) -> np.ndarray | None:
    """:func:`recall` on the version as it is now; a memo there that is not trusted is
    said once in the log."""
    found = client.get_model_version(name, version)
    memo = found.tags.get(memo_tag(key))
    if memo is None:
        return None
    stored = None
    if ":" not in memo and found.run_id:  # the seal alone: the answers are in the run
        stored = artifact_text(client, found.run_id, answers_path(key))
    answers = recall(found.tags, key, stored)
    if answers is None:
        logging.getLogger(__name__).warning(
            "%s v%s: its remembered gate answers (%s) do not match its files and scorer; "
            "scoring it again",
            name,
            version,
            memo_tag(key),
        )
    return answers
