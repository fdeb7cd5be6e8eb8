"""Retrievers: anything with ``search(query, k) -> list[Passage]``; BM25 (bm25s) built in.

A retriever is built as ``Class(corpus, **retriever_kwargs)`` from a name in ``RETRIEVERS``
or an import path ``"package.module:Class"``, so a dense index or a client of a remote search
service plugs in without touching the env. The BM25 index is built once per corpus and cached
on disk under ``$RLAGENT_CACHE`` (default ``~/.cache/rlagent``), keyed by a hash of the corpus
and the scoring parameters; later runs load it instead of re-indexing.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from rlagent.envs.search.corpus import Passage

# name -> "module:Class"; an import path given instead of a name is used as is.
RETRIEVERS = {"bm25": "rlagent.envs.search.retrieval:BM25Retriever"}


@runtime_checkable
class Retriever(Protocol):
    """The interface the env needs: the ``k`` best passages for ``query``, best first.

    Fewer than ``k`` (or none) is allowed, e.g. when nothing matches.
    """

    def search(self, query: str, k: int) -> list[Passage]: ...


def cache_root() -> Path:
    """``$RLAGENT_CACHE``, else ``~/.cache/rlagent``."""
    return Path(os.environ.get("RLAGENT_CACHE") or Path.home() / ".cache" / "rlagent")


# --- BM25 -----------------------------------------------------------------------------------
_WORD = re.compile(r"\w+")
_TOKENIZER_VERSION = 1  # part of the cache key: bump when tokenize() changes


def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str, stopwords: frozenset[str] = frozenset()) -> list[str]:
    """Lowercased word tokens (letters, digits, underscore), stopwords removed.

    >>> tokenize("Who founded Zolvane-Works in 1971?", frozenset({"who", "in"}))
    ['founded', 'zolvane', 'works', '1971']
    """
    return [t for t in _WORD.findall(text.lower()) if t not in stopwords]


def corpus_key(corpus: list[Passage], **params: Any) -> str:
    """A hash of the passages (in order) and of everything else that shapes the index."""
    h = hashlib.sha256(json.dumps({"tokenizer": _TOKENIZER_VERSION, **params}, sort_keys=True).encode())
    for p in corpus:
        h.update(f"{p.id}\0{p.title}\0{p.text}\0".encode())
    return h.hexdigest()[:24]


class BM25Retriever:
    """Okapi BM25 over ``title + text`` of each passage, with an on-disk index cache.

    ``from_cache`` tells whether this instance loaded a cached index (True) or built it.
    ``cache_dir`` overrides the cache root; ``cache=False`` neither reads nor writes it.
    """

    def __init__(
        self,
        corpus: list[Passage],
        k1: float = 1.5,
        b: float = 0.75,
        cache_dir: str | Path | None = None,
        cache: bool = True,
    ):
        import bm25s

        if not corpus:
            raise ValueError("BM25Retriever: the corpus is empty")
        self.corpus = list(corpus)
        self.stopwords = _stopwords()
        key = corpus_key(self.corpus, k1=k1, b=b, backend="bm25s")
        self.index_dir = Path(cache_dir or cache_root()) / "bm25" / key
        self.from_cache = False
        if cache and (self.index_dir / "complete").is_file():
            self.model = bm25s.BM25.load(str(self.index_dir), show_progress=False)
            self.from_cache = True
            return
        self.model = bm25s.BM25(k1=k1, b=b)
        tokens = [tokenize(f"{p.title} {p.text}", self.stopwords) for p in self.corpus]
        self.model.index(tokens, show_progress=False)
        if cache:
            self._save()

    def _save(self) -> None:
        # Write into a sibling temp dir, then rename: a reader never sees half an index, and
        # of two processes indexing the same corpus at once the second simply loses the race.
        self.index_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.index_dir.parent))
        try:
            self.model.save(str(tmp), show_progress=False)
            (tmp / "complete").write_text(f"{len(self.corpus)} passages\n")
            os.replace(tmp, self.index_dir)
        except OSError:
            if not (self.index_dir / "complete").is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def search(self, query: str, k: int) -> list[Passage]:
        tokens = tokenize(query, self.stopwords)
        k = min(k, len(self.corpus))
        if not tokens or k < 1:
            return []
        docs, scores = self.model.retrieve([tokens], k=k, show_progress=False, n_threads=0)
        # Zero score: no query term occurs in the passage; it is not a result.
        return [self.corpus[int(i)] for i, s in zip(docs[0], scores[0]) if s > 0]


# --- plugging in other retrievers -----------------------------------------------------------
def resolve_retriever_class(spec: str | type) -> type:
    """The class for a name in ``RETRIEVERS`` or a ``"module:Class"`` path (a class as is)."""
    if not isinstance(spec, str):
        return spec
    path = RETRIEVERS.get(spec, spec)
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"retriever: unknown retriever {spec!r}; use one of "
            f"{sorted(RETRIEVERS)} or an import path 'package.module:Class'"
        )
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"retriever: cannot import {path!r}: {err}") from err


def make_retriever(spec: str | type | Retriever, corpus: list[Passage], **kwargs: Any) -> Retriever:
    """A retriever instance: ``spec`` is a name, an import path, a class, or an instance."""
    if isinstance(spec, Retriever) and not isinstance(spec, type):
        return spec
    cls = resolve_retriever_class(spec)
    try:
        retriever = cls(corpus, **kwargs)
    except TypeError as err:  # most often a retriever_kwargs key the class does not take
        raise ValueError(
            f"retriever: {spec!r} could not be built as "
            f"{getattr(cls, '__name__', cls)}(corpus, **{kwargs!r}): {err}"
        ) from err
    if not callable(getattr(retriever, "search", None)):  # a bad kwarg value: ValueError
        raise ValueError(  # noqa: TRY004
            f"retriever: {spec!r} built an object without a search(query, k) "
            f"method: {type(retriever).__name__}"
        )
    return retriever
