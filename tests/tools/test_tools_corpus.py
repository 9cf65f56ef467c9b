"""The corpus research tools: loading, search, passages, confinement, the default corpus."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import anyio
import pytest

from orchestrator.models.base import ToolCall
from orchestrator.tools import (
    Corpus,
    FunctionTool,
    PassageNotFoundError,
    PassagePathError,
    ToolArgumentError,
    corpus_tools,
)
from orchestrator.tools._text import html_to_text, split_passages, tokenize
from orchestrator.turns import run_tool_calls

SECRET = "TOPSECRET launch codes for the zeppelin"


def _pdf_bytes(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF showing ``lines`` in Helvetica (built by hand)."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    shown = " T* ".join(f"({escape(line)}) Tj" for line in lines)
    stream = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A corpus with markdown, text, HTML, a PDF, noise, and links pointing outside."""
    (tmp_path / "secret.txt").write_text(SECRET)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret2.md").write_text(SECRET)

    root = tmp_path / "corpus"
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "intro.md").write_text(
        "# Introduction\n\nThis guide covers gardening basics.\n\n"
        + "Watering schedules depend on the season and the soil. " * 20
        + "\n\n## Plants\n\nPhotosynthesis turns sunlight into sugar using chlorophyll "
        "in the leaves of green plants.\n"
    )
    (root / "guide" / "tools.txt").write_text("Spades, rakes and hoes are garden tools.\n")
    (root / "volcano.html").write_text(
        "<html><head><title>Volcanoes</title><style>p { color: red; }</style>"
        "<script>var leaked = 'SCRIPTBODY magma';</script></head><body>"
        "<h1>Volcanoes</h1><p>A volcano erupts when magma &amp; gas rise "
        "through the crust.</p><p>Ash clouds can ground aircraft.</p></body></html>"
    )
    (root / "report.pdf").write_bytes(
        _pdf_bytes(["Quarterly report", "Revenue of the zebra division grew strongly."])
    )
    (root / ".hidden.md").write_text("hidden zeppelin notes")
    (root / "picture.png").write_bytes(b"\x89PNG not text")
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linkdir")
    os.symlink(root / "guide" / "tools.txt", root / "guide" / "alias.txt")  # inside: kept
    return root


@pytest.fixture
def corpus(corpus_dir: Path) -> Corpus:
    return Corpus.from_directory(corpus_dir)


def _tools(corpus: Corpus) -> tuple[FunctionTool, FunctionTool]:
    search, read = corpus_tools(corpus)
    assert (search.name, read.name) == ("search_corpus", "read_passage")
    return search, read


# -- loading ----------------------------------------------------------------------------


def test_loads_supported_files_with_stable_ids(corpus: Corpus, corpus_dir: Path) -> None:
    documents = {p.document for p in corpus}
    assert documents == {
        "guide/alias.txt",
        "guide/intro.md",
        "guide/tools.txt",
        "report.pdf",
        "volcano.html",
    }
    assert corpus.root == corpus_dir.resolve()
    intro = [p for p in corpus if p.document == "guide/intro.md"]
    assert [p.id for p in intro] == [f"guide/intro.md#{n}" for n in range(len(intro))]
    assert len(intro) >= 2  # the long paragraph forced a split
    assert all(len(p.text) <= 800 for p in intro)
    assert [p.id for p in Corpus.from_directory(corpus_dir)] == [p.id for p in corpus]


def test_skipped_files_are_listed_with_reasons(corpus: Corpus) -> None:
    reasons = {s.path: s.reason for s in corpus.skipped}
    assert set(reasons) == {"broken.pdf", "link.txt"}
    assert "outside the corpus root" in reasons["link.txt"]


def test_html_drops_scripts_and_styles_and_pdf_text_is_extracted(corpus: Corpus) -> None:
    html = " ".join(p.text for p in corpus if p.document == "volcano.html")
    assert "magma & gas rise" in html
    assert "SCRIPTBODY" not in html
    assert "color" not in html
    pdf = " ".join(p.text for p in corpus if p.document == "report.pdf")
    assert "zebra division grew" in pdf


@pytest.mark.anyio
async def test_async_load_matches_sync_load(corpus_dir: Path, corpus: Corpus) -> None:
    with anyio.fail_after(10):
        loaded = await Corpus.load(corpus_dir)
    assert loaded.passages == corpus.passages


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="not a directory"):
        Corpus.from_directory(tmp_path / "missing")


def test_empty_corpus_matches_nothing(tmp_path: Path) -> None:
    empty = Corpus.from_directory(tmp_path)
    assert len(empty) == 0
    assert empty.search("anything") == []
    assert empty.format_search("anything").startswith("No passages match 'anything'")


# -- search and read --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "document"),
    [
        ("photosynthesis sunlight chlorophyll", "guide/intro.md"),
        ("volcano magma eruption", "volcano.html"),
        ("zebra revenue", "report.pdf"),
        ("garden tools rakes", "guide/alias.txt"),
    ],
)
def test_search_ranks_the_relevant_passage_first(corpus: Corpus, query: str, document: str) -> None:
    hits = corpus.search(query, k=3)
    assert hits[0].passage.document == document
    assert all(a.score >= b.score > 0 for a, b in itertools.pairwise(hits))


@pytest.mark.anyio
async def test_search_tool_formats_blocks_with_ids(corpus: Corpus) -> None:
    search, _ = _tools(corpus)
    with anyio.fail_after(10):
        text = await search({"query": "photosynthesis in green plants", "k": 2})
    first = text.split("\n\n")[0]
    assert first.startswith("[guide/intro.md#")
    passage_id, rest = first[1:].split("] ", 1)
    assert rest.startswith("(score ")
    assert "Photosynthesis turns sunlight" in (corpus.passage_text(passage_id) or "")
    assert len(rest) < 330  # a snippet, not the whole passage


@pytest.mark.anyio
async def test_search_tool_says_when_nothing_matches(corpus: Corpus) -> None:
    search, _ = _tools(corpus)
    with anyio.fail_after(10):
        assert (await search({"query": "quantum chromodynamics"})).startswith(
            "No passages match 'quantum chromodynamics'"
        )
        assert (await search({"query": "the and of"})).startswith("No passages match")


@pytest.mark.anyio
async def test_search_tool_validates_k(corpus: Corpus) -> None:
    search, _ = _tools(corpus)
    assert search.input_schema["required"] == ["query"]
    assert search.input_schema["properties"]["k"]["maximum"] == 20
    with anyio.fail_after(10), pytest.raises(ToolArgumentError, match="argument 'k'"):
        await search({"query": "volcano", "k": 0})


@pytest.mark.anyio
async def test_read_passage_round_trips_search_results(corpus: Corpus) -> None:
    search, read = _tools(corpus)
    with anyio.fail_after(10):
        results = await search({"query": "ash clouds aircraft", "k": 1})
        passage_id = results[1 : results.index("]")]
        text = await read({"id": passage_id})
    assert text == f"[{passage_id}]\n{corpus.passage_text(passage_id)}"
    assert "Ash clouds can ground aircraft." in text


@pytest.mark.anyio
async def test_unknown_passage_is_an_error_naming_it(corpus: Corpus) -> None:
    _, read = _tools(corpus)
    with anyio.fail_after(10), pytest.raises(PassageNotFoundError) as caught:
        await read({"id": "guide/intro.md#999"})
    assert str(caught.value).startswith("no passage with id 'guide/intro.md#999'")
    with pytest.raises(PassageNotFoundError, match="'no-hash-here'"):
        corpus.passage("no-hash-here")


def test_passage_exists_and_text(corpus: Corpus) -> None:
    assert corpus.passage_exists("report.pdf#0")
    assert corpus.passage_text("guide/tools.txt#0") == "Spades, rakes and hoes are garden tools."
    assert not corpus.passage_exists("report.pdf#7")
    assert corpus.passage_text("../secret.txt#0") is None
    assert corpus.passage_text("link.txt#0") is None


# -- confinement ------------------------------------------------------------------------


def _escaping_ids(corpus_dir: Path) -> list[str]:
    return [
        "../secret.txt#0",
        "guide/../../secret.txt#0",
        "..\\secret.txt#0",
        f"{corpus_dir.parent / 'secret.txt'}#0",
        "/etc/passwd#0",
        "C:\\Windows\\win.ini#0",
        "link.txt#0",  # a symlink in the corpus pointing outside
        "linkdir/secret2.md#0",  # a directory symlink pointing outside
    ]


@pytest.mark.anyio
async def test_ids_outside_the_root_are_refused(corpus: Corpus, corpus_dir: Path) -> None:
    _, read = _tools(corpus)
    for passage_id in _escaping_ids(corpus_dir):
        with anyio.fail_after(10), pytest.raises(PassagePathError, match="outside the corpus"):
            await read({"id": passage_id})
        with anyio.fail_after(10):
            call = ToolCall(id="c1", name="read_passage", arguments={"id": passage_id})
            (result,) = await run_tool_calls([call], {"read_passage": read}, 10.0)
        assert result.is_error
        assert result.content.startswith("PassagePathError: passage id")
        assert "TOPSECRET" not in result.content


@pytest.mark.anyio
async def test_secret_text_never_appears_in_any_result(corpus: Corpus) -> None:
    search, _ = _tools(corpus)
    assert all("TOPSECRET" not in p.text and "zeppelin" not in p.text for p in corpus)
    with anyio.fail_after(10):
        text = await search({"query": "launch codes zeppelin", "k": 20})
    assert text.startswith("No passages match")
    assert "TOPSECRET" not in text


# -- text helpers -----------------------------------------------------------------------


def test_split_passages_merges_small_paragraphs_and_cuts_long_ones() -> None:
    text = "One.\n\nTwo.\n\n" + ("A sentence of some length. " * 80)
    passages = split_passages(text, max_chars=200)
    assert passages[0].startswith("One.\n\nTwo.\n\nA sentence")
    assert all(len(p) <= 200 for p in passages)
    assert " ".join(passages).split() == text.split()  # nothing lost, order kept
    assert split_passages("x" * 450, max_chars=200) == ["x" * 200, "x" * 200, "x" * 50]


def test_tokenize_lowercases_drops_stopwords_and_folds_plurals() -> None:
    assert tokenize("The Context_Managers of the WITH statements, and entries!") == [
        "context",
        "manager",
        "statement",
        "entry",
    ]


def test_html_to_text_keeps_blocks_apart() -> None:
    text = html_to_text("<div>One<br>two</div><p>Three &lt;3</p><noscript>no</noscript>")
    assert text == "One\ntwo\n\nThree <3"


# -- the default corpus -----------------------------------------------------------------


def test_default_corpus_loads_quickly_and_finds_the_with_statement() -> None:
    started = time.perf_counter()
    corpus = Corpus.default()
    elapsed = time.perf_counter() - started
    assert elapsed < 5  # ~0.05 s in practice; generous for slow CI machines
    assert len(corpus) > 300
    assert Corpus.default() is corpus  # cached
    hits = corpus.search("with statement context manager", k=5)
    assert any(hit.passage.document == "pydoc/with" for hit in hits)
    assert all(hit.passage.id.startswith("pydoc/") for hit in hits)
    assert any('"with" statement' in hit.passage.text for hit in hits)


@pytest.mark.anyio
async def test_default_corpus_tools(anyio_backend: str) -> None:
    with anyio.fail_after(10):
        corpus = await Corpus.load_default()
        search, read = _tools(corpus)
        text = await search({"query": "with statement context manager"})
        assert "[pydoc/with#" in text
        passage = await read({"id": "pydoc/with#0"})
    assert passage.startswith('[pydoc/with#0]\nThe "with" statement')
    assert "CPython documentation" in search.description
    with pytest.raises(PassagePathError):
        corpus.passage("pydoc/../../etc/passwd#0")


def test_default_corpus_can_add_stdlib_module_docstrings() -> None:
    corpus = Corpus.default(include_modules=True)
    assert corpus.passage_exists("stdlib/json#0")
    assert corpus.search("json encoder decoder", k=10)
    assert len(corpus) > len(Corpus.default())
