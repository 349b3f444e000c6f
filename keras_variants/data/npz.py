"""Reading ``.npz`` files in the Keras layout without ever running code from them.

``imdb.npz`` stores ragged sequences as NumPy object arrays, which NumPy saves with pickle.
Pickle can run arbitrary code, so object arrays are rebuilt with an unpickler that knows only
the few NumPy globals needed to reconstruct an array; any other global is refused.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from keras_variants.errors import DataError

# The only globals a NumPy object array of Python lists needs to be rebuilt.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


_HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, origin: str) -> None:
        super().__init__(file)
        self._origin = origin

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load global {module}.{name} ({self._origin})")


@dataclass(frozen=True)
class NpzFile:
    """One ``.npz`` file read into memory, with the SHA-256 of its bytes.

    Arrays are parsed on demand by :meth:`array`, so a caller can turn a large object array
    into a compact form and drop it before parsing the next one.
    """

    path: Path
    sha256: str
    archive: zipfile.ZipFile
    members: dict[str, str]  # key -> member name in the archive

    def array(self, key: str) -> np.ndarray:
        return _read_member(self.archive, self.members[key], self.path.name, key)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, parsed now (fine for files without large object arrays)."""
        return {key: self.array(key) for key in self.members}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_npz(path: Path, required: tuple[str, ...]) -> NpzFile:
    """Open ``path``, checking that ``required`` keys are present.

    The file is read once: the same bytes are hashed and parsed.
    Raises DataError naming the file and key for a missing, truncated, corrupt or unsafe file.
    """
    name = path.name
    if not path.is_file():
        raise DataError(str(path), None, "file not found", "Check --data-dir / VARIANTS_DATA_DIR.")
    raw = path.read_bytes()
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as exc:
        raise DataError(
            name, None, f"not a valid .npz (zip) archive: {exc}", "Re-download the file."
        ) from exc
    members = {m.removesuffix(".npy"): m for m in archive.namelist()}
    missing = [key for key in required if key not in members]
    if missing:
        raise DataError(name, ", ".join(missing), f"missing key(s); the file has {sorted(members)}")
    return NpzFile(path=path, sha256=sha256_of(raw), archive=archive, members=members)


def _read_member(archive: zipfile.ZipFile, member: str, file: str, key: str) -> np.ndarray:
    try:
        with archive.open(member) as handle:
            version = npy_format.read_magic(handle)
            read_header = _HEADER_READERS.get(version)
            if read_header is None:
                raise DataError(file, key, f"unsupported .npy format version {version}")
            shape, fortran, dtype = read_header(handle)
            if dtype.hasobject:
                array = _ArrayOnlyUnpickler(handle, f"{file}:{key}").load()
                if not isinstance(array, np.ndarray) or array.shape != shape:
                    raise DataError(
                        file, key, "object array payload does not match its header shape"
                    )
                return array
            count = int(np.prod(shape))
            data = handle.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise DataError(file, key, "array data is truncated")
            array = np.frombuffer(data, dtype=dtype, count=count)
            return array.reshape(shape, order="F" if fortran else "C")
    except DataError:
        raise
    except pickle.UnpicklingError as exc:
        raise DataError(
            file,
            key,
            f"unsafe pickle payload refused: {exc}",
            "Only NumPy arrays of integer lists are accepted; do not use this file.",
        ) from exc
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        raise DataError(file, key, f"corrupt or truncated array: {exc}") from exc
    except Exception as exc:  # anything else the bytes can provoke is still a bad file
        raise DataError(file, key, f"unreadable array ({type(exc).__name__}: {exc})") from exc
