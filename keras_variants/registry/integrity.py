"""What a registered version's files must be: the SHA-256 of every file of its model folder,
recorded on the version when it is registered (tag ``files.sha256``) and compared before any
load, so that a file changed, added or removed in the artifact store since then (a pickle
with a payload, say) is refused before anything is deserialized.

Pure functions on a folder and a recorded table; the registry does the I/O.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

FILES_TAG = "files.sha256"  # JSON {relative path: sha256} on the model version
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
