"""What the lecture and the book say, as typed data read from ``sources.toml`` beside this
module: one :class:`Entry` per lecture claim and headline number, each with its sources.

The file ships inside the package (``[tool.setuptools.package-data]``); reading it is the
only I/O here, once per process.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Literal

Protocol = Literal["lecture", "book"]
PROTOCOLS: tuple[Protocol, ...] = ("lecture", "book")


@dataclass(frozen=True)
class Reference:
    """One source's statement of a quantity: a book edition's text or a notebook's output."""

    edition: str  # "1st", "2nd", "2nd/3rd"
    kind: Literal["text", "notebook"]
    source: str  # where to read it: a section, or a notebook file and its cells
    quote: str
    protocol: Literal["lecture", "book", "other"]  # which of ours repeats its setup
    value: float | None = None  # None: words without a number
    precision: float = 0.0  # how the value was rounded: it stands for value +- precision/2

    @property
    def name(self) -> str:
        return f"{self.edition} ed. {self.kind}"


@dataclass(frozen=True)
class Lecture:
    quote: str
    verbatim: bool  # False: the lecture's point in the words, not its own
    value: float | None = None


@dataclass(frozen=True)
class Entry:
    """A quantity of the ledger: a claim's paired difference (``claim``) or one variant's
    measure (``label``, ``measure``; ``epoch``: read from the curve at that epoch)."""

    id: str
    quantity: str
    why: str  # why the book's number and ours can differ
    book: tuple[Reference, ...]
    lecture: Lecture | None = None
    claim: str | None = None
    label: str | None = None
    measure: str | None = None
    epoch: int | None = None
    book_says_otherwise: str | None = None


@dataclass(frozen=True)
class Sources:
    entries: tuple[Entry, ...]
    protocols: dict[str, str]  # protocol -> how it validates, in words
    validation: dict[str, str]  # protocol -> "held_out" or "test"
    book_settings: dict[str, dict[str, object]]  # variant -> the book's settings for it

    def for_claim(self, number: str) -> Entry | None:
        return next((e for e in self.entries if e.claim == number), None)


def parse_sources(document: dict) -> Sources:
    """:class:`Sources` from the parsed TOML document."""
    entries = []
    for raw in document["entry"]:
        raw = dict(raw)
        book = tuple(Reference(**r) for r in raw.pop("book", ()))
        lecture = Lecture(**raw.pop("lecture")) if "lecture" in raw else None
        entries.append(Entry(book=book, lecture=lecture, **raw))
    protocols = document["protocols"]
    return Sources(
        entries=tuple(entries),
        protocols={name: p["description"] for name, p in protocols.items()},
        validation={name: p["validation"] for name, p in protocols.items()},
        book_settings={name: dict(s) for name, s in document["book_settings"].items()},
    )


@functools.cache
def load_sources() -> Sources:
    """The package's ``sources.toml``."""
    text = resources.files(__package__).joinpath("sources.toml").read_text(encoding="utf-8")
    return parse_sources(tomllib.loads(text))
