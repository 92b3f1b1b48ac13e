"""Lexical ranking (Okapi BM25 over key and value tokens), the search used without embeddings.

A query that is a substring of a key or value (upstream's in-memory match) always matches,
so everything upstream would return is still found; BM25 orders the matches.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from orloj_ray.memory.base import Entry

_TOKEN = re.compile(r"[\w]+", re.UNICODE)
K1, B = 1.2, 0.75
SUBSTRING_BONUS = 1.0


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text or "")]


def rank(query: str, items: list[tuple[str, str]], top_k: int) -> list[Entry]:
    """Entries with a positive score, best first (ties by key), at most ``top_k``."""
    q_terms = set(tokens(query))
    needle = query.strip().lower()
    docs = [(key, value, Counter(tokens(f"{key} {value}"))) for key, value in items]
    if not docs:
        return []
    avg_len = sum(sum(c.values()) for *_, c in docs) / len(docs) or 1.0
    df = Counter(term for *_, c in docs for term in set(c) if term in q_terms)
    n = len(docs)
    scored = []
    for key, value, counts in docs:
        length = sum(counts.values())
        score = 0.0
        for term in q_terms:
            tf = counts.get(term, 0)
            if not tf:
                continue
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            score += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / avg_len))
        if needle and (needle in key.lower() or needle in value.lower()):
            score += SUBSTRING_BONUS
        if score > 0:
            scored.append(Entry(key, value, score))
    scored.sort(key=lambda e: (-e.score, e.key))
    return scored[:top_k]
