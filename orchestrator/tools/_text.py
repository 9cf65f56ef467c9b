"""Text from documents, passages from text, and tokens from passages (for the corpus)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]
from pypdf import PdfReader

__all__ = [
    "SUFFIXES",
    "html_to_text",
    "pdf_to_text",
    "read_document",
    "split_passages",
    "tokenize",
]

SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".pdf"})
"""File suffixes the corpus reads (compared lower-cased)."""

_STOPWORDS = frozenset(STOPWORDS_EN)
_WORD = re.compile(r"[^\W_]+")  # letters and digits; `snake_case` gives two words
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?;:])\s+|\n")
_BLANK_LINES = re.compile(r"\n{3,}")


# -- tokens -----------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lower-cased words without English stopwords, plurals folded (``managers`` -> ``manager``).

    Args:
        text: Any text (a passage or a query).

    Returns:
        The tokens, in order.
    """
    return [_fold_plural(word) for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


def _fold_plural(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# -- passages ---------------------------------------------------------------------------


def split_passages(text: str, max_chars: int = 800) -> list[str]:
    """Split text into passages: paragraphs, merged while they fit in ``max_chars``.

    A paragraph longer than ``max_chars`` is cut at sentence or line ends (or, failing
    that, at spaces). The split depends only on the text, so passage numbers are stable.

    Args:
        text: The document's text.
        max_chars: Rough upper bound on a passage's length.

    Returns:
        The passages, stripped, none empty.
    """
    pieces: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        if paragraph.strip():
            pieces.extend(_split_long(paragraph.strip("\n").rstrip(), max_chars))
    return _merge(pieces, max_chars, "\n\n")


def _split_long(paragraph: str, max_chars: int) -> list[str]:
    if len(paragraph) <= max_chars:
        return [paragraph]
    parts: list[str] = []
    for sentence in _SENTENCE_BREAK.split(paragraph):
        if sentence.strip():
            parts.extend(_hard_wrap(sentence.strip(), max_chars))
    return _merge(parts, max_chars, " ")


def _hard_wrap(text: str, max_chars: int) -> list[str]:
    chunks: list[str] = []
    while len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars + 1)
        cut = cut if cut > max_chars // 2 else max_chars
        chunks.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        chunks.append(text)
    return chunks


def _merge(pieces: list[str], max_chars: int, joiner: str) -> list[str]:
    merged: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(joiner) + len(piece) > max_chars:
            merged.append(current)
            current = piece
        else:
            current = f"{current}{joiner}{piece}" if current else piece
    if current:
        merged.append(current)
    return merged


# -- documents --------------------------------------------------------------------------


def read_document(path: Path, max_bytes: int) -> str:
    """The text of one file, by suffix (see :data:`SUFFIXES`).

    Args:
        path: The file (already checked to be inside the corpus root).
        max_bytes: Files larger than this are refused.

    Returns:
        The extracted text.

    Raises:
        ValueError: The file is too large or its suffix is not supported.
        OSError: The file cannot be read.
        pypdf.errors.PyPdfError: The PDF is malformed.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"file is {size} bytes, over the {max_bytes}-byte limit")
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return pdf_to_text(path)
    if suffix not in SUFFIXES:
        raise ValueError(f"unsupported file type {suffix!r}")
    text = path.read_bytes().decode("utf-8", errors="replace")
    return html_to_text(text) if suffix in {".html", ".htm"} else text


def pdf_to_text(path: Path) -> str:
    """The text of every page of a PDF (pages separated by blank lines).

    Args:
        path: The PDF file.

    Returns:
        The text pypdf extracts; empty for a PDF of scanned images.
    """
    reader = PdfReader(path)
    if reader.is_encrypted:
        reader.decrypt("")  # many "encrypted" PDFs have an empty user password
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)


def html_to_text(html: str) -> str:
    """The visible text of an HTML document; scripts, styles and templates dropped.

    Block elements (paragraphs, headings, list items, table rows...) become paragraph
    breaks, so passages follow the page's structure.

    Args:
        html: The HTML source.

    Returns:
        Plain text with character references decoded.
    """
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
    _BLOCK = frozenset(
        {
            "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption",
            "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
            "main", "nav", "ol", "p", "pre", "section", "table", "title", "tr", "ul",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._skipping = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self._parts.append("\n\n")
        elif tag == "br":
            self._parts.append("\n")
        if tag == "pre":
            self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self._parts.append("\n\n")
        if tag == "pre":
            self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        self._parts.append(data if self._pre else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        """The collected text, tidied (lines stripped, at most one blank line in a row)."""
        lines = "".join(self._parts).splitlines()
        return _BLANK_LINES.sub("\n\n", "\n".join(line.strip() for line in lines)).strip()
