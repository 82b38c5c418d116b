"""Fitted fusion of genre sources: weighs each source by what it is worth."""

from __future__ import annotations

import numpy as np
import pytest

from labelling.ml.errors import LabellingInputError
from labelling.ml.fusion import GenreFusion, fit_fusion

GENRES = ["a", "b", "c", "d"]


def _source(y: np.ndarray, signal: float, temperature: float, rng) -> np.ndarray:
    """Independent noisy evidence: logits = signal on the true genre + unit noise, as
    probabilities at `temperature` (below 1: overconfident)."""
    n, k = len(y), len(GENRES)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    logits /= temperature
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _nll(p, y):
    return float(-np.log(p[np.arange(len(y)), y]).mean())


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, len(GENRES), 4000)
    return y, {
        "metadata": _source(y, signal=1.5, temperature=1.0, rng=rng),  # calibrated
        "vqa": _source(y, signal=1.2, temperature=0.25, rng=rng),  # overconfident
        "noise": rng.dirichlet(np.ones(len(GENRES)), len(y)),  # knows nothing
    }


def test_two_informative_sources_beat_either_and_stay_calibrated(data):
    y, sources = data
    fit_y, test_y = y[:2000], y[2000:]
    pair = {s: sources[s] for s in ("metadata", "vqa")}
    fusion = fit_fusion({s: p[:2000] for s, p in pair.items()}, fit_y, GENRES)
    fused = fusion.combine({s: p[2000:] for s, p in pair.items()})
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    accuracy = (fused.argmax(1) == test_y).mean()
    assert accuracy > (sources["metadata"][2000:].argmax(1) == test_y).mean() + 0.03
    assert _nll(fused, test_y) < min(_nll(p[2000:], test_y) for p in pair.values())
    # The overconfident source is tempered: weight well below the calibrated one's.
    weights = dict(zip(fusion.sources, fusion.weights, strict=True))
    assert weights["vqa"] < 0.6 * weights["metadata"]
    # Calibrated: mean confidence close to accuracy on unseen rows.
    assert abs(fused.max(axis=1).mean() - accuracy) < 0.03


def test_a_source_that_knows_nothing_gets_no_weight(data):
    y, sources = data
    pair = {s: sources[s] for s in ("metadata", "noise")}
    fusion = fit_fusion(pair, y, GENRES)
    weights = dict(zip(fusion.sources, fusion.weights, strict=True))
    assert abs(weights["noise"]) < 0.1 and weights["metadata"] > 0.8
    assert fusion.report["accuracy"] == pytest.approx(
        (sources["metadata"].argmax(1) == y).mean(), abs=0.01
    )


def test_round_trip_and_refusals(data):
    y, sources = data
    pair = {s: sources[s][:100] for s in ("metadata", "vqa")}
    fusion = fit_fusion(pair, y[:100], GENRES)
    again = GenreFusion.from_json(fusion.to_json())
    np.testing.assert_allclose(again.combine(pair), fusion.combine(pair))
    with pytest.raises(LabellingInputError, match="needs the sources vqa"):
        fusion.combine({"metadata": pair["metadata"]})
    with pytest.raises(LabellingInputError, match="at least 20"):
        fit_fusion({s: p[:5] for s, p in pair.items()}, y[:5], GENRES)
    with pytest.raises(LabellingInputError, match="expected"):
        fit_fusion({"metadata": pair["metadata"][:, :3]}, y[:100], GENRES)
