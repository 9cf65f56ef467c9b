"""Research tools over a folder of documents: BM25 search and passage reading.

A :class:`Corpus` is loaded once (off the event loop) and kept in memory: every document
is split into passages with stable ids ``<relative-path>#<n>`` (``guide/intro.md#3``), and
the passages are ranked with BM25 (the ``bm25s`` library). :func:`corpus_tools` exposes two
tools to models, ``search_corpus`` and ``read_passage``.

Confinement: loading never reads a file whose real path is outside the root (symbolic links
are resolved first; links to directories are not followed), and ``read_passage`` refuses an
id whose path is absolute, contains ``..``, or resolves outside the root, with an error that
says so. Everything served comes from the in-memory passages, never from the disk.

The default corpus (:meth:`Corpus.default`) needs no files: it is built from the
documentation topics every CPython install ships in :mod:`pydoc_data.topics`.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import sys
import threading
import tokenize as pytokenize
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any

import anyio.to_thread
import bm25s  # type: ignore[import-untyped]
from pydantic import Field
from pypdf.errors import PyPdfError

from orchestrator.tools._text import SUFFIXES, read_document, split_passages, tokenize
from orchestrator.tools.errors import PassageNotFoundError, PassagePathError
from orchestrator.tools.registry import FunctionTool, tool

__all__ = [
    "CORPUS_TOOL_NAMES",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_PASSAGE_CHARS",
    "MAX_SEARCH_RESULTS",
    "Corpus",
    "Passage",
    "SearchHit",
    "SkippedFile",
    "corpus_tools",
]

CORPUS_TOOL_NAMES = ("search_corpus", "read_passage")
"""The names of the tools :func:`corpus_tools` returns, in that order."""

DEFAULT_PASSAGE_CHARS = 800
"""Paragraphs are merged into passages of up to about this many characters."""
DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
"""Files larger than this are skipped (and listed in :attr:`Corpus.skipped`)."""
MAX_SEARCH_RESULTS = 20
"""The most passages one ``search_corpus`` call may return."""
SNIPPET_CHARS = 300
"""How much of each passage a search result shows."""

_DEFAULT_LOCK = threading.Lock()
_DEFAULT_CACHE: dict[tuple[type[Corpus], bool, int], Corpus] = {}
_READ_ERRORS = (OSError, ValueError, PyPdfError)


@dataclass(frozen=True, slots=True)
class Passage:
    """One passage of one document.

    Attributes:
        id: ``<document>#<n>``, e.g. ``guide/intro.md#3``.
        document: The document's path relative to the corpus root (POSIX separators).
        number: The passage's position in its document, from 0.
        text: The passage's full text.
    """

    id: str
    document: str
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A passage matching a query, with its BM25 score (higher is better)."""

    passage: Passage
    score: float


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A file the corpus did not load, and why (too large, unreadable, link outside...)."""

    path: str
    reason: str


class Corpus:
    """Documents split into passages, searchable with BM25.

    Build one with :meth:`load` (async, off the event loop), :meth:`from_directory` (sync),
    :meth:`from_texts` (in-memory documents) or :meth:`default` (CPython's documentation).

    Args:
        passages: The passages, in document order.
        root: The resolved root directory, or ``None`` for a corpus of virtual documents.
        name: A short human name, used in the tools' descriptions.
        skipped: Files that were not loaded.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        *,
        root: Path | None = None,
        name: str = "the document corpus",
        skipped: Sequence[SkippedFile] = (),
    ) -> None:
        self.root = root
        self.name = name
        self.skipped: tuple[SkippedFile, ...] = tuple(skipped)
        self._passages: dict[str, Passage] = {p.id: p for p in passages}
        self._order: tuple[Passage, ...] = tuple(self._passages.values())
        self._index: Any = _bm25_index(self._order)

    # -- building -----------------------------------------------------------------------

    @classmethod
    async def load(
        cls,
        root: str | os.PathLike[str],
        *,
        max_passage_chars: int = DEFAULT_PASSAGE_CHARS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> Corpus:
        """Load a directory in a worker thread (see :meth:`from_directory`)."""
        build = functools.partial(
            cls.from_directory,
            root,
            max_passage_chars=max_passage_chars,
            max_file_bytes=max_file_bytes,
        )
        return await anyio.to_thread.run_sync(build)

    @classmethod
    def from_directory(
        cls,
        root: str | os.PathLike[str],
        *,
        max_passage_chars: int = DEFAULT_PASSAGE_CHARS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> Corpus:
        """Load every supported file under ``root``, recursively (blocking).

        Reads ``.md``/``.markdown``/``.txt``/``.rst`` as UTF-8 text, ``.html``/``.htm`` as
        visible text (scripts and styles dropped) and ``.pdf`` through pypdf. Hidden files
        and directories (``.git``...) are ignored; links to directories are not followed and
        links to files only when their target is inside the root. Unreadable files are
        listed in :attr:`skipped` rather than failing the load.

        Args:
            root: The corpus directory.
            max_passage_chars: Rough upper bound on a passage's length.
            max_file_bytes: Larger files are skipped.

        Returns:
            The corpus.

        Raises:
            NotADirectoryError: ``root`` is not a directory.
        """
        given = Path(root).expanduser()
        if not given.is_dir():
            raise NotADirectoryError(f"corpus root {str(given)!r} is not a directory")
        real_root = given.resolve(strict=True)
        passages: list[Passage] = []
        skipped: list[SkippedFile] = []
        for relative, target in _walk(real_root, skipped):
            try:
                text = read_document(target, max_file_bytes)
            except _READ_ERRORS as exc:
                skipped.append(SkippedFile(relative, f"{type(exc).__name__}: {exc}"))
                continue
            passages.extend(_passages(relative, text, max_passage_chars))
        name = f"the documents in {real_root.name or str(real_root)!r}"
        return cls(passages, root=real_root, name=name, skipped=skipped)

    @classmethod
    def from_texts(
        cls,
        documents: Mapping[str, str],
        *,
        name: str = "the document corpus",
        max_passage_chars: int = DEFAULT_PASSAGE_CHARS,
    ) -> Corpus:
        """A corpus of in-memory documents, keyed by a relative path-like name.

        Args:
            documents: Document name (``pydoc/with``) to its text.
            name: A short human name, used in the tools' descriptions.
            max_passage_chars: Rough upper bound on a passage's length.

        Returns:
            The corpus, with ``root`` ``None``.

        Raises:
            ValueError: A document name is absolute or contains ``..`` or ``#``.
        """
        passages: list[Passage] = []
        for document, text in documents.items():
            if "#" in document or _escapes(document):
                raise ValueError(f"document name {document!r} must be a relative path")
            passages.extend(_passages(document, text, max_passage_chars))
        return cls(passages, name=name)

    @classmethod
    def default(
        cls, *, include_modules: bool = False, max_passage_chars: int = DEFAULT_PASSAGE_CHARS
    ) -> Corpus:
        """CPython's own documentation, built once per process (per arguments) and cached.

        One document per topic of :mod:`pydoc_data.topics` (ids ``pydoc/<topic>#<n>``:
        statements, operators, built-in types...). Needs no files and no network.

        Args:
            include_modules: Also add the docstring of every pure-Python standard-library
                module (ids ``stdlib/<module>#<n>``); read from source, never imported.
            max_passage_chars: Rough upper bound on a passage's length.

        Returns:
            The shared corpus.
        """
        key = (cls, include_modules, max_passage_chars)
        with _DEFAULT_LOCK:
            corpus = _DEFAULT_CACHE.get(key)
            if corpus is None:
                documents = _default_documents(include_modules)
                name = "the CPython documentation"
                corpus = cls.from_texts(documents, name=name, max_passage_chars=max_passage_chars)
                _DEFAULT_CACHE[key] = corpus
            return corpus

    @classmethod
    async def load_default(cls, *, include_modules: bool = False) -> Corpus:
        """:meth:`default`, built in a worker thread the first time."""
        build = functools.partial(cls.default, include_modules=include_modules)
        return await anyio.to_thread.run_sync(build)

    # -- reading ------------------------------------------------------------------------

    @property
    def passages(self) -> tuple[Passage, ...]:
        """Every passage, in document order."""
        return self._order

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[Passage]:
        return iter(self._order)

    def __repr__(self) -> str:
        return f"Corpus(name={self.name!r}, passages={len(self)})"

    def search(self, query: str, k: int = 5) -> list[SearchHit]:
        """The best ``k`` passages for ``query`` (BM25), best first; only real matches.

        Args:
            query: Free text; lower-cased, stopwords dropped.
            k: How many passages at most.

        Returns:
            The hits; empty when no passage shares a word with the query.
        """
        tokens = tokenize(query)
        if self._index is None or k < 1 or not tokens:
            return []
        k = min(k, len(self._order))
        found, scores = self._index.retrieve([tokens], k=k, show_progress=False, n_threads=0)
        hits = [
            SearchHit(self._order[int(i)], float(s))
            for i, s in zip(found[0], scores[0], strict=True)
            if float(s) > 0
        ]
        return sorted(hits, key=lambda hit: (-hit.score, hit.passage.id))

    def passage(self, passage_id: str) -> Passage:
        """The passage with this id.

        Args:
            passage_id: ``<relative-path>#<n>``.

        Returns:
            The passage.

        Raises:
            PassagePathError: The path part is absolute, contains ``..``, or resolves
                outside the corpus root (through a symbolic link, say).
            PassageNotFoundError: No passage has this id.
        """
        document, _, _ = passage_id.rpartition("#")
        if _escapes(document) or not self._resolves_inside(document):
            raise PassagePathError(
                f"passage id {passage_id!r} points outside the corpus; ids are relative "
                "paths inside it, as returned by search_corpus (e.g. 'guide/intro.md#3')"
            )
        found = self._passages.get(passage_id)
        if found is None:
            raise PassageNotFoundError(
                f"no passage with id {passage_id!r} in {self.name}; "
                "use search_corpus to find passage ids"
            )
        return found

    def passage_exists(self, passage_id: str) -> bool:
        """Whether a passage has this id (in memory only: no disk access, never raises)."""
        return self.passage_text(passage_id) is not None

    def passage_text(self, passage_id: str) -> str | None:
        """The passage's text, or ``None`` for an unknown or out-of-corpus id (never raises)."""
        document, _, _ = passage_id.rpartition("#")
        if _escapes(document):
            return None
        found = self._passages.get(passage_id)
        return None if found is None else found.text

    def format_search(self, query: str, k: int = 5) -> str:
        """Search results as text for a model: one block per passage, id first.

        Args:
            query: Free text.
            k: How many passages at most.

        Returns:
            Blocks like ``[guide/intro.md#3] (score 4.21) first 300 characters...``, or a
            sentence saying nothing matched.
        """
        hits = self.search(query, k)
        if not hits:
            return (
                f"No passages match {query!r} in {self.name}. "
                "Try other keywords (synonyms, fewer or more specific words)."
            )
        return "\n\n".join(
            f"[{hit.passage.id}] (score {hit.score:.2f}) {_snippet(hit.passage.text)}"
            for hit in hits
        )

    def format_passage(self, passage_id: str) -> str:
        """A passage as text for a model: ``[id]`` on the first line, then the full text."""
        found = self.passage(passage_id)
        return f"[{found.id}]\n{found.text}"

    def _resolves_inside(self, document: str) -> bool:
        if self.root is None:
            return True
        try:
            return (self.root / document).resolve().is_relative_to(self.root)
        except (OSError, ValueError, RuntimeError):
            return False


def corpus_tools(corpus: Corpus) -> list[FunctionTool]:
    """The ``search_corpus`` and ``read_passage`` tools over ``corpus``.

    Args:
        corpus: The corpus to search; it is only read.

    Returns:
        The two tools, in that order.
    """

    def search_corpus(query: str, k: Annotated[int, Field(ge=1, le=MAX_SEARCH_RESULTS)] = 5) -> str:
        """Search the corpus (the description is set below, naming the corpus).

        Args:
            query: Keywords to look for, e.g. "with statement context manager".
            k: How many passages to return at most.
        """
        return corpus.format_search(query, k)

    def read_passage(id: str) -> str:
        """Return the full text of one passage, given its id from search_corpus.

        Args:
            id: The passage id, e.g. "guide/intro.md#3".
        """
        return corpus.format_passage(id)

    search = tool(
        search_corpus,
        description=(
            f"Search {corpus.name} for passages relevant to a query (BM25 keyword ranking). "
            "Each result starts with the passage id in square brackets, then its score and "
            "the first characters of the passage; pass an id to read_passage for the full "
            "text, and cite passages by their ids."
        ),
    )
    read = tool(read_passage)
    search.local = read.local = True  # in-memory lookups: a worker would only add a trip
    return [search, read]


# -- helpers ------------------------------------------------------------------------------


def _walk(root: Path, skipped: list[SkippedFile]) -> Iterator[tuple[str, Path]]:
    """Supported files under ``root`` as (relative POSIX path, real path), sorted."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            if filename.startswith(".") or path.suffix.lower() not in SUFFIXES:
                continue
            relative = path.relative_to(root).as_posix()
            if "#" in relative or _escapes(relative):
                skipped.append(SkippedFile(relative, "name cannot be part of a passage id"))
                continue
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError) as exc:
                skipped.append(SkippedFile(relative, f"cannot resolve: {exc}"))
                continue
            if not target.is_relative_to(root):
                skipped.append(SkippedFile(relative, "symbolic link to outside the corpus root"))
                continue
            yield relative, target


def _passages(document: str, text: str, max_chars: int) -> list[Passage]:
    return [
        Passage(f"{document}#{n}", document, n, chunk)
        for n, chunk in enumerate(split_passages(text, max_chars))
    ]


def _escapes(document: str) -> bool:
    """Whether a path is absolute (POSIX or Windows style) or climbs up with ``..``."""
    windows = PureWindowsPath(document)  # splits on both separators
    return (
        PurePosixPath(document).is_absolute()
        or bool(windows.drive or windows.root)
        or ".." in windows.parts
        or "\x00" in document
    )


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 3].rstrip() + "..."


def _bm25_index(passages: Sequence[Passage]) -> Any:
    """A ``bm25s.BM25`` index of the passages (``None`` if there is nothing to index)."""
    corpus_tokens = [tokenize(p.text) for p in passages]
    if not any(corpus_tokens):
        return None
    index = bm25s.BM25()  # Lucene variant, k1=1.5, b=0.75
    index.index(corpus_tokens, show_progress=False)
    return index


def _default_documents(include_modules: bool) -> dict[str, str]:
    from pydoc_data.topics import topics  # noqa: PLC0415  (only when first needed)

    documents = {f"pydoc/{topic}": text for topic, text in sorted(topics.items())}
    if include_modules:
        for module in sorted(sys.stdlib_module_names):
            doc = None if module.startswith("_") else _module_docstring(module)
            if doc:
                documents[f"stdlib/{module}"] = doc
    return documents


def _module_docstring(module: str) -> str | None:
    """A top-level stdlib module's docstring, read from its source without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    try:
        with pytokenize.open(spec.origin) as source:
            for token in pytokenize.generate_tokens(source.readline):
                if token.type in {pytokenize.COMMENT, pytokenize.NL, pytokenize.NEWLINE}:
                    continue
                if token.type != pytokenize.STRING:
                    return None
                value = ast.literal_eval(token.string)
                return value if isinstance(value, str) else None
    except (OSError, SyntaxError, ValueError, pytokenize.TokenError):
        return None
    return None
