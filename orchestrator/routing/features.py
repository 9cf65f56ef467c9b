"""What the learned router reads of a task: features of a :class:`RouteRequest`.

No vocabulary, no network, no model download: words and word pairs of the prompt are hashed
(scikit-learn's analyzer and murmurhash, as its ``HashingVectorizer`` does) beside one-hot
tokens for the task's family (its id without the trailing index, see :func:`task_family`),
its kind, its declared capability levels and its size (log of the prompt's bytes).
Stateless, so a router featurizes a request the same way in every process, live or
replaying the store; one request costs about 0.1 ms.

Needs the ``learn`` extra (``pip install 'tiered-orchestrator[learn]'``: scikit-learn).
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.exceptions import UserError
from orchestrator.routing.rules import RouteRequest

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["Features", "Featurizer", "learning_available", "task_family"]

_INDEX = re.compile(r"(?:[._:/#-]?\d+)+$")


def task_family(task_id: str) -> str:
    """The task's kind as its id names it: the id without its trailing index.

    ``"mmlu.sociology.12"`` -> ``"mmlu.sociology"``, ``"search_3"`` -> ``"search"``,
    ``"summarise"`` -> ``"summarise"``. Tasks a workflow or planner numbers alike are
    one family, which is what lets the router learn a kind of task it has never seen
    declared differently.
    """
    return _INDEX.sub("", task_id) or task_id


def learning_available() -> bool:
    """Whether scikit-learn (the ``learn`` extra) is installed."""
    return importlib.util.find_spec("sklearn") is not None


def _require_learning() -> None:
    if not learning_available():
        raise UserError(
            "the learned router needs scikit-learn: pip install 'tiered-orchestrator[learn]' "
            "(or route with threshold=None, on declared needs alone)"
        )


@dataclass(frozen=True, slots=True)
class Features:
    """One request's sparse feature vector: sorted column indices and their values."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


class Featurizer:
    """Turns a route request into :class:`Features`, and many into a sparse matrix.

    Args:
        n_features: Width of the hashed space (2**18: collisions are rare).
        text_weight: Scale of the text block against the one-hot tokens (each 1.0). The
            words of a prompt are a weak signal across kinds of task and a stronger one
            within a kind; the family, kind and needs tokens carry what is learned per kind.
        max_chars: Characters of the prompt read (its start says what it asks).
    """

    def __init__(
        self, *, n_features: int = 2**18, text_weight: float = 0.25, max_chars: int = 4000
    ) -> None:
        _require_learning()
        from sklearn.feature_extraction.text import HashingVectorizer  # noqa: PLC0415  (the learn extra)
        from sklearn.utils import murmurhash3_32  # noqa: PLC0415

        self.n_features = n_features
        self.text_weight = text_weight
        self.max_chars = max_chars
        self._analyze = HashingVectorizer(ngram_range=(1, 2)).build_analyzer()
        self._hash = murmurhash3_32

    def features(self, request: RouteRequest) -> Features:
        """The request's features: its text (L2-normed, scaled), tokens, size."""
        width = self.n_features
        text: dict[int, float] = {}
        for token in self._analyze((request.prompt or request.instruction)[: self.max_chars]):
            column = self._hash(token, positive=True) % width
            text[column] = text.get(column, 0.0) + 1.0
        norm = math.sqrt(sum(v * v for v in text.values())) or 1.0
        scale = self.text_weight / norm
        merged = {column: value * scale for column, value in text.items()}
        for token in _tokens(request):
            column = self._hash(token, positive=True) % width
            merged[column] = merged.get(column, 0.0) + 1.0
        size_column = width  # the one dense column, past the hashed ones
        merged[size_column] = math.log1p(request.input_tokens) / 10.0
        indices = tuple(sorted(merged))
        return Features(indices, tuple(merged[i] for i in indices))

    @property
    def width(self) -> int:
        """Columns of a feature row (the hashed ones and the size)."""
        return self.n_features + 1

    def matrix(self, rows: Sequence[Features]) -> csr_matrix:
        """The rows as one sparse matrix (what a learner is fitted on)."""
        from scipy.sparse import csr_matrix  # noqa: PLC0415  (the learn extra)

        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        for row in rows:
            indices.extend(row.indices)
            values.extend(row.values)
            indptr.append(len(indices))
        return csr_matrix((values, indices, indptr), shape=(len(rows), self.width))


def _tokens(request: RouteRequest) -> list[str]:
    levels = [f"need:{name}={level}" for name, level in request.needs.levels().items()]
    return [
        "bias",
        f"family={task_family(request.task_id)}",
        f"kind={request.kind}",
        f"size={int(math.log2(request.input_tokens + 1))}",
        *levels,
        *([f"label={request.label}"] if request.label is not None else []),
    ]
