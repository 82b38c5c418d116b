"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import pytest

from retrieval.ml.evaluation import (
    average_precision_at_k,
    mean_average_precision_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
)

T, F = True, False


def test_average_precision_hand_computed():
    # Relevant at ranks 1 and 3: (1/1 + 2/3) / min(3, 2)
    assert average_precision_at_k([T, F, T], 3, 2) == pytest.approx((1 + 2 / 3) / 2)
    # Same ranking, 5 relevant in the collection: normalised by min(k, R) = 3
    assert average_precision_at_k([T, F, T], 3, 5) == pytest.approx((1 + 2 / 3) / 3)
    # A perfect top-k scores 1 even when R > k
    assert average_precision_at_k([T, T, T, F], 3, 10) == pytest.approx(1.0)
    # Only the first k ranks count
    assert average_precision_at_k([F, F, T], 2, 1) == 0.0
    # Relevant at ranks 2 and 4, k = 4, R = 3: (1/2 + 2/4) / 3
    assert average_precision_at_k([F, T, F, T, T], 4, 3) == pytest.approx(1 / 3)
    assert average_precision_at_k([F, F], 2, 0) == 0.0


def test_average_precision_rejects_inconsistent_totals():
    with pytest.raises(ValueError, match="n_relevant_total"):
        average_precision_at_k([T, T], 2, 1)
    with pytest.raises(ValueError, match="k must be"):
        average_precision_at_k([T], 0, 1)


def test_mean_average_precision():
    rankings = [[T, F, T], [F, T, F], [F, F, F]]
    value = mean_average_precision_at_k(rankings, 3, [2, 1, 4])
    assert value == pytest.approx(((1 + 2 / 3) / 2 + 0.5 + 0.0) / 3)
    with pytest.raises(ValueError, match="one per query"):
        mean_average_precision_at_k(rankings, 3, [1, 1])
    with pytest.raises(ValueError, match="at least one"):
        mean_average_precision_at_k([], 3, [])


def test_precision_recall_and_reciprocal_rank():
    ranking = [F, T, T, F, T]
    assert precision_at_k(ranking, 4) == pytest.approx(0.5)
    assert precision_at_k([T], 4) == pytest.approx(0.25)  # short ranking: misses
    assert recall_at_k(ranking, 3, 4) == pytest.approx(0.5)
    assert recall_at_k([F], 3, 0) == 0.0
    assert reciprocal_rank(ranking) == pytest.approx(0.5)
    assert reciprocal_rank(ranking, k=1) == 0.0
    assert reciprocal_rank([F, F, F, T]) == pytest.approx(0.25)
