"""The report's ledger: each lecture claim and headline number as the lecture, the book
(source by source, from ``studies/sources.toml``) and our seeds give it, with a verdict
and why they can differ; as cells, Markdown, HTML, and the JSON logged on the parent runs.

Built from :class:`~keras_variants.tracking.records.VariantRecord` lists and the claims'
verdicts; the rule is :mod:`keras_variants.studies.ledger`'s. Rendering is pure.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from keras_variants.reporting.findings import seed_table
from keras_variants.studies.claims import LECTURE_CLAIMS, Decided, paired_differences
from keras_variants.studies.ledger import LEVEL, Row, ledger_row
from keras_variants.studies.sources import Entry, Protocol, load_sources
from keras_variants.tracking.records import VariantRecord

TITLE = "Lecture, book and ours"
INTRO = (
    "Each claim and headline number as the lecture states it, as the book states it (its "
    "1st edition's text and notebooks, its 2nd and 3rd editions' text), and as our seeds "
    "measure it: the mean, its 95% interval and the seeds. The book's numbers are single "
    "runs, so a source agrees when its number (widened by its rounding) falls where one "
    "more run of ours would fall with 95% probability (the t prediction interval), and "
    "differs when it falls outside; with one seed we cannot tell. The verdict is on the "
    "book's number whose setup this run's protocol repeats (a notebook's before a text's); "
    "the lecture's words are judged by the claim's verdict. Every source is in "
    "keras_variants/studies/sources.toml."
)
COLUMNS = [
    ("#", "id"),
    ("quantity", "quantity"),
    ("lecture", "lecture"),
    ("book (source)", "book"),
    ("ours", "ours"),
    ("verdict", "verdict"),
    ("why they can differ", "why"),
]
NARROW_COLUMNS = [("#", "id"), ("ours", "ours"), ("verdict", "verdict")]
CLAIM_MEASURES = {c.number: c.measure for c in LECTURE_CLAIMS}


def protocol_of(records: Sequence[VariantRecord]) -> Protocol:
    """The protocol the runs were trained under (runs from before protocols: the lecture's)."""
    found = {r.tags.get("protocol", r.params.get("protocol", "lecture")) for r in records}
    return "book" if found == {"book"} else "lecture"


def _values(entry: Entry, records: Sequence[VariantRecord], table: dict) -> list[float]:
    """Ours for ``entry``, one value per seed: a claim's paired differences, or the
    measure of its label's runs (at ``entry.epoch`` of the curve, when it names one)."""
    if entry.claim is not None:
        claim = next(c for c in LECTURE_CLAIMS if c.number == entry.claim)
        return paired_differences(claim, table)
    values = []
    for r in records:
        if r.label != entry.label:
            continue
        if entry.epoch is not None:
            curve = r.curves.get(entry.measure, [])
            if len(curve) >= entry.epoch:
                values.append(curve[entry.epoch - 1])
        elif entry.measure in table[r.label][r.seed]:
            values.append(table[r.label][r.seed][entry.measure])
    return values


def _bounds(entry: Entry, records: Sequence[VariantRecord]) -> tuple[float, float]:
    """The values ``entry``'s measure can take: epochs 1 to the runs' last, accuracies 0-1
    (for a claim, their differences); losses are unbounded above."""
    measure = CLAIM_MEASURES.get(entry.claim or "", entry.measure or "")
    if measure == "validation_loss_min_epoch":
        last = max(len(r.curves.get("val/loss", [])) for r in records)
        return (1 - last, last - 1) if entry.claim else (1, last)
    if "accuracy" in measure:
        return (-1.0, 1.0) if entry.claim else (0.0, 1.0)
    return (-math.inf, math.inf) if entry.claim else (0.0, math.inf)


def ledger(records: Sequence[VariantRecord], decided: Sequence[Decided]) -> list[Row]:
    """The ledger's rows for the entries this run measured, in the sources' order."""
    table = seed_table(list(records))
    protocol = protocol_of(records)
    verdicts = {d.claim.number: d.verdict for d in decided}
    rows = []
    for entry in load_sources().entries:
        values = _values(entry, records, table)
        if values:
            verdict = verdicts.get(entry.claim or "")
            rows.append(ledger_row(entry, values, protocol, verdict, _bounds(entry, records)))
    return rows


def _number(value: float, measure: str, signed: bool) -> str:
    if measure == "validation_loss_min_epoch":
        return f"{value:+.1f}" if signed else f"{value:.1f}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _source_value(value: float, measure: str, signed: bool) -> str:
    """A source's number as it wrote it, to no more digits than it had (up to five)."""
    text = f"{value:+.5f}" if signed else f"{value:.5f}"
    text = text.rstrip("0").rstrip(".")
    return text if measure != "validation_loss_min_epoch" else _number(value, measure, signed)


def cells(row: Row) -> dict[str, object]:
    """The row's cells as the report shows them; ``book`` is a list, one line per source."""
    entry = row.entry
    measure = CLAIM_MEASURES.get(entry.claim or "", entry.measure or "")
    signed = entry.claim is not None
    lecture = "-"
    if entry.lecture is not None:
        quote = entry.lecture.quote
        lecture = f'"{quote}"' if entry.lecture.verbatim else f"{quote} (in our words)"
        if entry.lecture.value is not None:
            lecture += f" = {_source_value(entry.lecture.value, measure, signed)}"
    book = []
    for reference, agreement in row.book:
        line = f"{reference.name}, {reference.source}: '{reference.quote}'"
        if reference.value is not None:
            line += f" = {_source_value(reference.value, measure, signed)}"
            line += f" [{reference.protocol} protocol; {agreement}]"
        book.append(line)
    ours = row.ours
    if ours is None:
        shown = "not measured"
    elif ours.n < 2 or math.isnan(ours.low):
        shown = f"{_number(ours.mean, measure, signed)}, {ours.n} seed, no interval"
    else:
        shown = (
            f"{_number(ours.mean, measure, signed)} [{_number(ours.low, measure, signed)}, "
            f"{_number(ours.high, measure, signed)}] ({LEVEL:.0%}), {ours.n} seeds"
        )
        if ours.one_run is not None:
            low, high = ours.one_run
            shown += (
                f"; one run in [{_number(low, measure, signed)}, {_number(high, measure, signed)}]"
            )
    if ours is not None:
        shown += f"; {ours.protocol} protocol"
    verdict = f"book: {row.verdict}"
    if row.primary is not None and row.primary.value is not None:
        value = _source_value(row.primary.value, measure, signed)
        verdict += f" ({row.primary.name} {value})"
    if row.lecture is not None:
        verdict += f"; lecture: {row.lecture}"
    return {
        "id": entry.id,
        "quantity": entry.quantity,
        "lecture": lecture,
        "book": book,
        "ours": shown,
        "verdict": verdict,
        "why": row.why,
    }


def as_json(rows: Sequence[Row]) -> list[dict[str, object]]:
    """The ledger as logged on the parent runs (``report/ledger.json``)."""
    return [cells(row) for row in rows]


def to_markdown(ledger_cells: Sequence[dict[str, object]]) -> list[str]:
    """A narrow table (Prefect's artifact view clips wide ones), each row's quantity,
    sources and reason in a list below it."""
    lines = [f"### {TITLE}", "", INTRO, ""]
    lines.append("| " + " | ".join(h for h, _ in NARROW_COLUMNS) + " |")
    lines.append("|" + " --- |" * len(NARROW_COLUMNS))
    lines += ["| " + " | ".join(str(c[k]) for _, k in NARROW_COLUMNS) + " |"
              for c in ledger_cells]  # fmt: skip
    lines.append("")
    for c in ledger_cells:
        lines.append(f"- **{c['id']}: {c['quantity']}.** Lecture: {c['lecture']}. Book:")
        lines += [f"  - {line}" for line in c["book"]]  # type: ignore[union-attr]
        lines.append(f"  - Why they can differ: {c['why']}.")
    return [*lines, ""]


def to_html(ledger_cells: Sequence[dict[str, object]]) -> str:
    """The ledger as one table, a source a line in its book cell."""
    parts = [f"<h3>{TITLE}</h3><p>{html.escape(INTRO)}</p><table class='ledger'><tr>"]
    parts += [f"<th>{html.escape(h)}</th>" for h, _ in COLUMNS]
    parts.append("</tr>")
    for c in ledger_cells:
        row = []
        for _, key in COLUMNS:
            value = c[key]
            if isinstance(value, list):
                text = "<br>".join(html.escape(v) for v in value)
            else:
                text = html.escape(str(value))
            cls = "verdict" if key == "verdict" else "text"
            row.append(f"<td class='{cls}'>{text}</td>")
        parts.append("<tr>" + "".join(row) + "</tr>")
    parts.append("</table>")
    return "".join(parts)
