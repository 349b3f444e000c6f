"""Variable-length integer sequences (IMDb reviews as word ranks or ids), stored flat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ragged:
    """Variable-length integer sequences stored flat: row i is values[offsets[i]:offsets[i+1]]."""

    values: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray | slice) -> Ragged:
        """The sequences at ``rows``, in that order."""
        if isinstance(rows, slice):  # consecutive rows: a view
            start, stop, _ = rows.indices(len(self))
            offsets = self.offsets[start : stop + 1]
            return Ragged(self.values[offsets[0] : offsets[-1]], offsets - offsets[0])
        starts, stops = self.offsets[rows], self.offsets[1:][rows]
        offsets = np.concatenate([[0], np.cumsum(stops - starts)])
        # Row by row: an index of every kept value would take 4 x 8 bytes per word.
        pieces = [self.values[start:stop] for start, stop in zip(starts, stops, strict=True)]
        values = np.concatenate(pieces) if pieces else self.values[:0].copy()
        return Ragged(values, offsets)

    @staticmethod
    def concatenate(parts: list[Ragged]) -> Ragged:
        """The sequences of ``parts``, one after another."""
        lengths = np.concatenate([part.lengths for part in parts])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(parts[0].offsets.dtype)
        return Ragged(np.concatenate([part.values for part in parts]), offsets)


def take_rows(values: np.ndarray | Ragged, rows: np.ndarray | slice) -> np.ndarray | Ragged:
    """The rows ``rows`` of an array or of ragged sequences, in that order (consecutive
    rows given as a slice: a view)."""
    return values.take(rows) if isinstance(values, Ragged) else values[rows]
