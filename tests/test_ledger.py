"""The ledger: the sources file as the package ships it, the agreement rule on hand-made
numbers, and rows built from hand-made seeds against the sources."""

from __future__ import annotations

import json
import math
import re

import pytest

from keras_variants.config.pipeline import PROTOCOLS
from keras_variants.config.variants import VARIANTS
from keras_variants.reporting.report import build_report
from keras_variants.reporting.report_pages import to_html, to_markdown, write_report
from keras_variants.studies.claims import LECTURE_CLAIMS
from keras_variants.studies.ledger import agreement, ledger_row, one_run_range, primary_reference
from keras_variants.studies.sources import Entry, Reference, load_sources
from keras_variants.tracking.records import PipelineRecord, VariantRecord


def test_every_claim_has_an_entry_and_quotes_the_lecture_exactly() -> None:
    """A claim's text carries the lecture's words in quotation marks where they are its own
    (verbatim), and its point where the issues only paraphrase it."""
    sources = load_sources()
    for claim in LECTURE_CLAIMS:
        entry = sources.for_claim(claim.number)
        assert entry is not None and entry.lecture is not None, claim.number
        if entry.lecture.verbatim:
            assert f'"{entry.lecture.quote}"' in claim.statement, claim.number
        else:
            assert entry.lecture.quote.lower() in claim.statement.lower(), claim.number
    claim_1 = next(c for c in LECTURE_CLAIMS if c.number == "1")
    assert '"epoch 10 rather than epoch 6"' in claim_1.statement
    assert "after 6 epochs rather than 4" in sources.for_claim("1").book_says_otherwise


def test_every_source_is_cited_and_typed() -> None:
    """Each book reference names where to read it (a notebook with its cells, or an
    edition's section) and which of our protocols repeats its setup."""
    for entry in load_sources().entries:
        assert entry.book, entry.id
        for r in entry.book:
            assert r.protocol in ("lecture", "book", "other"), entry.id
            if r.kind == "notebook":
                assert re.search(r"first_edition/\S+\.ipynb.*cells? \d+", r.source), r.source
            else:  # a section's title, and where the notebooks hold the same words
                assert re.search(r"'[A-Z][^']+'", r.source), r.source
        assert entry.claim is not None or (entry.label in VARIANTS and entry.measure), entry.id


def test_the_book_settings_are_our_variants_and_the_protocols_agree() -> None:
    """The book protocol trains the variants as they are: a test that the book's settings
    (sources.toml) are the variants' settings, epochs included."""
    sources = load_sources()
    for name, settings in sources.book_settings.items():
        variant = VARIANTS[name]
        for key, value in settings.items():
            if key != "source":
                expected = tuple(value) if isinstance(value, list) else value
                assert getattr(variant, key) == expected, (name, key)
    assert sources.validation == PROTOCOLS


def test_a_notebooks_claim_difference_is_its_runs_numbers() -> None:
    """The claims' notebook values are the differences of the per-model numbers they quote
    (e.g. 2a: 0.4744 - 0.7694); caught by hand once, checked here for every entry."""
    for entry in load_sources().entries:
        for r in entry.book:
            if entry.claim and r.kind == "notebook" and r.value is not None:
                numbers = [float(x) for x in re.findall(r"\d+\.\d+", r.quote)]
                if entry.claim in ("3", "4b"):  # rises: the quote gives them as the last two
                    assert r.value == pytest.approx(numbers[2] - numbers[-1], abs=6e-5)
                elif entry.claim != "1":
                    assert r.value == pytest.approx(numbers[0] - numbers[1], abs=6e-5)


def test_one_run_range_is_the_t_prediction_interval() -> None:
    # mean 2, sd 1, n 3: 2 +- t(0.975, 2) * 1 * sqrt(1 + 1/3), t = 4.302653
    low, high = one_run_range([1.0, 2.0, 3.0])
    half = 4.302653 * math.sqrt(4 / 3)
    assert (low, high) == pytest.approx((2 - half, 2 + half), abs=1e-5)
    assert one_run_range([5.0, 5.0, 5.0]) == (5.0, 5.0)
    assert one_run_range([1.0, 2.0, 3.0], bounds=(1, 20)) == pytest.approx((1, 2 + half))
    assert one_run_range([0.3]) is None


AGREEMENTS = [
    # value, precision, our one-run range, verdict
    (0.88, 0.01, (0.886, 0.890), "differs"),  # 0.875-0.885 misses 0.886
    (0.88, 0.01, (0.884, 0.890), "agrees"),  # 88% reaches 0.885
    (0.88496, 0.0, (0.8850, 0.8890), "differs"),
    (3.0, 0.0, (3.0, 3.0), "agrees"),  # every seed the same epoch
    (4.0, 0.0, (3.0, 3.0), "differs"),
    (0.9913, 0.0, None, "cannot tell"),  # one seed
]


@pytest.mark.parametrize(("value", "precision", "span", "verdict"), AGREEMENTS)
def test_agreement(value: float, precision: float, span, verdict: str) -> None:
    assert agreement(value, precision, span) == verdict


def _ref(kind: str, protocol: str, value: float | None) -> Reference:
    return Reference("1st", kind, f"{kind} source", "words", protocol, value)


def test_primary_reference_is_the_same_protocols_notebook_first() -> None:
    refs = (
        _ref("text", "book", 4.0),
        _ref("notebook", "book", 3.0),
        _ref("notebook", "lecture", 4.5),
        _ref("text", "other", None),
    )
    entry = Entry("e", "q", "why", refs)
    assert primary_reference(entry, "book") is refs[1]
    assert primary_reference(entry, "lecture") is refs[2]
    only_other = Entry("e", "q", "why", (_ref("text", "other", 2.0), _ref("notebook", "book", 3)))
    assert primary_reference(only_other, "lecture").value == 3  # no lecture source: notebook
    assert primary_reference(Entry("e", "q", "why", (refs[3],)), "book") is None


def test_claim_1_row_from_hand_made_seeds() -> None:
    """Reduced minus original epoch on five seeds: +3 every time. The notebook's +3
    agrees, the text's +2 and the lecture's +4 differ; run under the lecture protocol, the
    verdict is on the book protocol's notebook, and the reason says the setups differ."""
    entry = load_sources().for_claim("1")
    row = ledger_row(entry, [3.0, 3.0, 3.0, 3.0, 3.0], "lecture", "holds")
    assert (row.ours.n, row.ours.mean, row.ours.one_run) == (5, 3.0, (3.0, 3.0))
    assert row.lecture == "differs"  # "epoch 10 rather than epoch 6": +4
    by_kind = {(r.edition, r.kind): a for r, a in row.book}
    assert by_kind == {("1st", "text"): "differs", ("1st", "notebook"): "agrees",
                       ("2nd/3rd", "text"): "differs"}  # fmt: skip
    assert row.primary.kind == "notebook" and row.verdict == "agrees"
    assert row.why.startswith(
        "other setups: the 1st ed. notebook is the book protocol's, this run the lecture's "
        "(--protocol book repeats it); one run of the book's against our seeds"
    )
    book = ledger_row(entry, [3.0, 3.0, 3.0, 3.0, 3.0], "book", "holds")
    assert not book.why.startswith("other setups")


def test_seeds_spread_over_every_possible_epoch_cannot_tell() -> None:
    """Three seeds at epochs 6, 8 and 15 of 20: one run could fall anywhere from 1 to 20,
    so no source can be said to agree."""
    entry = next(e for e in load_sources().entries if e.id == "imdb_reduced epoch")
    row = ledger_row(entry, [6.0, 8.0, 15.0], "book", bounds=(1, 20))
    assert row.ours.one_run == (1, 20) and row.verdict == "cannot tell"
    assert {a for _, a in row.book} == {"cannot tell"} and row.lecture == "cannot tell"
    assert row.why.startswith("our seeds spread so far that one run could take any value")
    narrow = ledger_row(entry, [6.0, 6.0, 7.0, 6.0], "book", bounds=(1, 20))
    assert narrow.verdict == "agrees"


def test_a_words_only_lecture_is_judged_by_the_claims_verdict() -> None:
    entry = load_sources().for_claim("4a")  # "slightly better": no number
    seeds = [-0.20, -0.25, -0.22]
    assert ledger_row(entry, seeds, "lecture", "holds").lecture == "agrees"
    assert ledger_row(entry, seeds, "lecture", "does not hold").lecture == "differs"
    assert ledger_row(entry, seeds, "lecture", "inconclusive").lecture == "cannot tell"
    one = ledger_row(entry, [-0.2], "lecture", "inconclusive")
    assert one.verdict == "cannot tell" and one.why.startswith("one seed gives no range")


def test_a_headline_number_picks_the_source_of_this_runs_protocol() -> None:
    """imdb_dense's accuracy after 4 epochs: with the book protocol (validation = test)
    ours is the 4-epoch test accuracy, judged against the notebook's 4-epoch retrain
    (0.88496); with the lecture protocol against the held-out figure (0.8893)."""
    entry = next(e for e in load_sources().entries if e.id == "imdb_dense accuracy, 4 epochs")
    ours = [0.8861, 0.8872, 0.8849, 0.8858, 0.8866]
    book = ledger_row(entry, ours, "book")
    assert book.primary.value == 0.88496 and book.verdict == "agrees"
    lecture = ledger_row(entry, ours, "lecture")
    assert lecture.primary.value == 0.8893 and lecture.verdict == "differs"
    assert lecture.lecture is None  # the lecture states no number here


def _record(label: str, seed: int, lowest_at: int, protocol: str) -> VariantRecord:
    """A 20-epoch IMDb run whose validation loss is lowest (0.28) at ``lowest_at``."""
    loss = [0.28 + 0.01 * abs(epoch - lowest_at) for epoch in range(1, 21)]
    accuracy = [0.88 - 0.001 * abs(epoch - lowest_at) for epoch in range(1, 21)]
    return VariantRecord(
        variant=label, dataset="imdb", run_id=f"{label}-{seed}",
        params={"seed": str(seed), "profile": "full"},
        metrics={"test/accuracy": accuracy[-1], "val/accuracy": accuracy[-1],
                 "validation_loss_min_epoch": lowest_at},
        tags={"label": label, "protocol": protocol},
        curves={"val/loss": loss, "val/accuracy": accuracy, "train/loss": [0.1] * 20,
                "train/accuracy": [0.9] * 20},
    )  # fmt: skip


def test_the_report_carries_the_ledger_and_the_parent_runs_get_it(tmp_path) -> None:
    """Three seeds of imdb_dense (lowest at epoch 3) and imdb_reduced (at 6), book
    protocol: claim 1's row shows +3 on every seed, the notebook's +3 agrees and the
    lecture's +4 differs; the sources are listed; ledger.json is written beside the report
    (so the parent runs get it as report/ledger.json)."""
    records = [
        _record(label, seed, lowest_at, "book")
        for seed in range(3)
        for label, lowest_at in (("imdb_dense", 3), ("imdb_reduced", 6))
    ]
    report = build_report(PipelineRecord("p", {"imdb": "r"}, {"imdb": records}))
    assert report.about["protocol"].startswith("book: trains on all training rows")
    rows = {row["id"]: row for row in report.ledger}
    assert list(rows) == ["1", "2a", "2b", "imdb_dense epoch", "imdb_reduced epoch",
                          "imdb_dense lowest loss", "imdb_dense accuracy, 4 epochs",
                          "imdb_dense accuracy, 20 epochs"]  # fmt: skip
    assert rows["1"]["ours"] == (
        "+3.0 [+3.0, +3.0] (95%), 3 seeds; one run in [+3.0, +3.0]; book protocol"
    )
    assert rows["1"]["verdict"] == "book: agrees (1st ed. notebook +3.0); lecture: differs"
    assert rows["imdb_dense epoch"]["verdict"] == (
        "book: agrees (1st ed. notebook 3.0); lecture: differs"
    )
    markdown = to_markdown(report)
    assert "### Lecture, book and ours" in markdown
    assert "| 1 | +3.0 [+3.0, +3.0] (95%), 3 seeds; one run in [+3.0, +3.0]; book protocol" in (
        markdown
    )
    assert (
        "  - 1st ed. notebook, first_edition/4.4-overfitting-and-underfitting.ipynb, cells 9 "
        "and 10 (fit logs): 'lowest val_loss 0.2772 at epoch 6 (smaller), 0.2827 at epoch 3 "
        "(original)' = +3.0 [book protocol; agrees]"
    ) in markdown.splitlines()
    page = to_html(report)
    assert page.index("Lecture claims") < page.index("Lecture, book and ours")
    assert "<table class='ledger'>" in page and "after 6 epochs rather than 4" in page
    folder = write_report(report, tmp_path, "p")
    assert json.loads((folder / "ledger.json").read_text()) == report.ledger
