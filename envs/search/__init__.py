"""``rlagent/Search-v0``: multi-turn search over a corpus (BM25 by default), Search-R1 style.

Modules: ``env`` (the Gymnasium env), ``retrieval`` (the ``Retriever`` interface, BM25 with an
on-disk index cache), ``corpus`` (passages, answer matching, Search-R1 JSONL files), ``world``
(the synthetic multi-hop world), ``sources`` (corpus/task resolution from env kwargs).
"""

from __future__ import annotations

from rlagent.envs.search.corpus import Passage, exact_match, normalize_answer
from rlagent.envs.search.env import SearchEnv, generate_task
from rlagent.envs.search.retrieval import BM25Retriever, Retriever

__all__ = [
    "BM25Retriever",
    "Passage",
    "Retriever",
    "SearchEnv",
    "exact_match",
    "generate_task",
    "normalize_answer",
]
