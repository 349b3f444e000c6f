"""What a registered version's files must be: the SHA-256 of every file of its model folder,
recorded when it is registered and compared before any load, so that a file changed, added
or removed in the artifact store since then (a pickle with a payload, say) is refused before
anything is deserialized.

The registry keeps one digest per version (tag ``files.sha256``): the SHA-256 of the
version's *manifest*, the table {file: SHA-256}. The manifest itself is an artifact of the
version's run (:func:`manifest_path`, named by that digest), read only when the files do
not match, to say which file differs; a manifest that does not hash to the tag is not
believed. Versions recorded before kept the whole table in the tag (a JSON object); it is
read as such.

Pure functions on a folder and a recorded table; the registry does the I/O.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FILES_TAG = "files.sha256"  # on the model version: the SHA-256 of its manifest
MANIFEST_FOLDER = "version_files"  # in the version's run: <manifest digest>.json
CHUNK_BYTES = 2**20
# MLflow itself writes this YAML (the model's name and version) into the model's folder
# whenever anyone loads ``models:/name/version``; on a local store that is the registered
# folder itself. It is read as data, never as code, so it is not part of what was registered.
WRITTEN_BY_MLFLOW = frozenset({"registered_model_meta"})


def file_digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative POSIX path) and its SHA-256, read in chunks,
    but the metadata MLflow writes there on a load (:data:`WRITTEN_BY_MLFLOW`)."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        if path.relative_to(folder).as_posix() in WRITTEN_BY_MLFLOW:
            continue
        if path.is_file() or path.is_symlink():
            digest = hashlib.sha256()
            with path.open("rb") as file:
                while chunk := file.read(CHUNK_BYTES):
                    digest.update(chunk)
            digests[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return digests


def encode(digests: dict[str, str]) -> str:
    return json.dumps(digests, sort_keys=True, separators=(",", ":"))


def decode(tag: str) -> dict[str, str]:
    return json.loads(tag)


def record(digests: dict[str, str]) -> str:
    """The version's tag for these file digests: the SHA-256 of their manifest."""
    return hashlib.sha256(encode(digests).encode()).hexdigest()


def manifest_path(recorded: str) -> str:
    """Where in the version's run the manifest of the tag ``recorded`` is kept."""
    return f"{MANIFEST_FOLDER}/{recorded}.json"


def is_table(recorded: str) -> bool:
    """Whether a tag is the whole table, as versions recorded before manifests keep it."""
    return recorded.startswith("{")


def matches(recorded: str, found: dict[str, str]) -> bool:
    """Whether the files ``found`` are the files the tag ``recorded`` names."""
    if is_table(recorded):
        return decode(recorded) == found
    return record(found) == recorded


def manifest_of(recorded: str, manifest: str | None) -> dict[str, str] | None:
    """The table behind the tag ``recorded``: the tag itself for an old one, else
    ``manifest`` (the text of the artifact) if it hashes to the tag; None otherwise."""
    if is_table(recorded):
        return decode(recorded)
    if manifest is None or hashlib.sha256(manifest.encode()).hexdigest() != recorded:
        return None
    return decode(manifest)


def first_difference(recorded: dict[str, str], found: dict[str, str]) -> str | None:
    """The first file that is not as registered, in words ("artifacts/model.keras was
    changed"), or None when every file matches."""
    for name in sorted(recorded.keys() | found.keys()):
        if name not in found:
            return f"{name} is missing"
        if name not in recorded:
            return f"{name} was added"
        if recorded[name] != found[name]:
            return f"{name} was changed"
    return None
