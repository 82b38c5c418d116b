"""Ranking metrics for retrieval evaluation (plain Python + numpy, no Django).

Every function takes a *ranking* of relevance judgements: ``relevant[i]`` is True when the
item returned at rank ``i + 1`` (best first) is relevant to the query. What "relevant"
means is the caller's choice; in MythraGen it is usually "has the queried style/genre/
artist". Only the first ``k`` entries count; a ranking shorter than ``k`` (the search
returned fewer items) is treated as padded with non-relevant items.

``n_relevant_total`` (R) is the number of relevant items in the whole collection for that
query, whether retrieved or not. It must be at least the number of relevant items in the
ranking. Queries with R = 0 have no meaningful recall or AP: every function returns 0.0 for
them, so leave such queries out of averages.

Definitions (rel_i = 1 if the item at rank i is relevant, else 0; ranks start at 1):

* precision@k = (sum_{i<=k} rel_i) / k. The denominator is k even when fewer than k
  items came back: missing items count as misses.
* recall@k = (sum_{i<=k} rel_i) / R.
* AP@k = (1 / min(k, R)) * sum_{i<=k} precision@i * rel_i. The normalisation
  min(k, R) is the number of relevant items a perfect ranking could place in the top k,
  so a perfect ranking scores 1.0 even when R > k (dividing by R would cap it at k/R and
  punish queries with many relevant items), and a ranking with only some of them scores
  less. This is the usual "AP@k" of recommender/retrieval benchmarks (e.g. ml_metrics'
  ``apk``, which divides by min(len(actual), k)).
* mAP@k = the mean of AP@k over queries.
* reciprocal rank = 1 / (rank of the first relevant item within the top k), 0 if none
  (MRR is its mean over queries).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ranked(relevant: Sequence[bool], k: int) -> np.ndarray:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return np.asarray(list(relevant)[:k], dtype=bool)


def _check_total(hits_in_ranking: int, n_relevant_total: int) -> None:
    if n_relevant_total < 0:
        raise ValueError("n_relevant_total cannot be negative")
    if hits_in_ranking > n_relevant_total:
        raise ValueError(
            f"the ranking holds {hits_in_ranking} relevant items but n_relevant_total is "
            f"{n_relevant_total}: the total must count every relevant item"
        )


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    """Fraction of the top k that is relevant; missing items (short ranking) count as misses."""
    top = _ranked(relevant, k)
    return float(top.sum()) / k


def recall_at_k(relevant: Sequence[bool], k: int, n_relevant_total: int) -> float:
    """Fraction of all R relevant items that appear in the top k (0.0 when R = 0)."""
    top = _ranked(relevant, k)
    hits = int(top.sum())
    _check_total(hits, n_relevant_total)
    return hits / n_relevant_total if n_relevant_total else 0.0


def average_precision_at_k(relevant: Sequence[bool], k: int, n_relevant_total: int) -> float:
    """AP@k = sum over relevant ranks i <= k of precision@i, divided by min(k, R).

    Example: ranking [T, F, T], k = 3, R = 2: (1/1 + 2/3) / min(3, 2) = 0.8333.
    With R = 5 (three relevant items never retrieved): (1 + 2/3) / min(3, 5) = 0.5556.
    """
    top = _ranked(relevant, k)
    hits = int(top.sum())
    _check_total(hits, n_relevant_total)
    if n_relevant_total == 0 or hits == 0:
        return 0.0
    ranks = np.flatnonzero(top) + 1  # 1-based ranks of the relevant items
    precisions = np.arange(1, hits + 1) / ranks  # precision@rank at each relevant rank
    return float(precisions.sum() / min(k, n_relevant_total))


def mean_average_precision_at_k(
    rankings: Sequence[Sequence[bool]], k: int, n_relevant: Sequence[int]
) -> float:
    """mAP@k: the mean of `average_precision_at_k` over queries (one R per ranking)."""
    if len(rankings) != len(n_relevant):
        raise ValueError(
            f"{len(rankings)} rankings but {len(n_relevant)} relevant counts: one per query"
        )
    if not rankings:
        raise ValueError("mean_average_precision_at_k needs at least one query")
    scores = [
        average_precision_at_k(ranking, k, total)
        for ranking, total in zip(rankings, n_relevant, strict=True)
    ]
    return float(np.mean(scores))


def reciprocal_rank(relevant: Sequence[bool], k: int | None = None) -> float:
    """1 / rank of the first relevant item (within the top k if given), 0.0 if there is none."""
    ranking = list(relevant) if k is None else list(_ranked(relevant, k))
    for rank, is_relevant in enumerate(ranking, start=1):
        if is_relevant:
            return 1.0 / rank
    return 0.0
