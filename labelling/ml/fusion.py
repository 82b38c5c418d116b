"""Fusing genre probabilities from several sources (metadata model, VQA) into one.

Log-linear pooling with fitted weights: for sources s with probability rows p_s,

    logit_g = sum_s w_s * log p_s[g] + b_g,      p = softmax(logit)

`w` and `b` are fitted by maximum likelihood (L-BFGS, a small L2 penalty pulling `w`
towards 1 and `b` towards 0) on artworks whose genre is known and that every source saw,
so a source is weighed by what it is worth there: a random stand-in VQA model gets a
weight near 0, a sharp one sharpens the result, and a source that is overconfident is
tempered (a weight below 1). The result is calibrated on the data it was fitted on; the
caller fits on artworks the sources were not trained on. numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import LabellingInputError

EPS = 1e-6
# At least this many artworks with every source to fit on.
MIN_FIT = 20


@dataclass(frozen=True)
class GenreFusion:
    """Fitted pooling weights: `sources` in order, their `weights`, per-genre `bias`."""

    sources: tuple[str, ...]
    genres: tuple[str, ...]
    weights: np.ndarray
    bias: np.ndarray
    fitted_on: int = 0
    report: dict[str, Any] = field(default_factory=dict)

    def combine(self, probabilities: dict[str, np.ndarray]) -> np.ndarray:
        """(n, n_genres) fused probabilities from each source's (n, n_genres) rows."""
        missing = [s for s in self.sources if s not in probabilities]
        if missing:
            raise LabellingInputError(f"fusion needs the sources {', '.join(missing)}")
        logits = _pooled_logits(
            [np.asarray(probabilities[s], dtype=np.float64) for s in self.sources],
            self.weights,
            self.bias,
        )
        return _softmax(logits)

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "genres": list(self.genres),
            "weights": [float(w) for w in self.weights],
            "bias": [float(b) for b in self.bias],
            "fitted_on": int(self.fitted_on),
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenreFusion:
        return cls(
            sources=tuple(data["sources"]),
            genres=tuple(data["genres"]),
            weights=np.asarray(data["weights"], dtype=np.float64),
            bias=np.asarray(data["bias"], dtype=np.float64),
            fitted_on=int(data.get("fitted_on", 0)),
            report=dict(data.get("report", {})),
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _pooled_logits(logs_or_probs, weights, bias, *, are_logs: bool = False) -> np.ndarray:
    logs = logs_or_probs if are_logs else [np.log(np.clip(p, EPS, 1.0)) for p in logs_or_probs]
    out = np.zeros_like(logs[0]) + bias[None, :]
    for w, lp in zip(weights, logs, strict=True):
        out = out + w * lp
    return out


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], EPS, 1.0))))


def fit_fusion(
    probabilities: dict[str, np.ndarray],
    labels: np.ndarray,
    genres: list[str],
    *,
    penalty: float = 1e-2,
) -> GenreFusion:
    """Fit the pooling weights on artworks whose genre index is `labels` (n,), with each
    source's (n, n_genres) probabilities. Raises LabellingInputError below MIN_FIT rows."""
    from scipy.optimize import minimize

    sources = tuple(probabilities)
    if not sources:
        raise LabellingInputError("fusion needs at least one source")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    k = len(genres)
    logs = []
    for name in sources:
        p = np.asarray(probabilities[name], dtype=np.float64)
        if p.shape != (len(y), k):
            raise LabellingInputError(f"{name}: expected ({len(y)}, {k}) probabilities")
        logs.append(np.log(np.clip(p, EPS, 1.0)))
    if len(y) < MIN_FIT:
        raise LabellingInputError(
            f"fusion needs at least {MIN_FIT} artworks seen by every source, got {len(y)}"
        )
    if y.min() < 0 or y.max() >= k:
        raise LabellingInputError("labels must be genre indices")
    m = len(sources)
    onehot = np.zeros((len(y), k))
    onehot[np.arange(len(y)), y] = 1.0

    def objective(theta):
        w, b = theta[:m], theta[m:]
        probs = _softmax(_pooled_logits(logs, w, b, are_logs=True))
        loss = -np.sum(onehot * np.log(np.clip(probs, 1e-300, 1.0))) / len(y)
        loss += penalty * (np.sum((w - 1.0) ** 2) + np.sum(b**2))
        diff = (probs - onehot) / len(y)
        grad_w = np.array([np.sum(diff * lp) for lp in logs]) + 2 * penalty * (w - 1.0)
        grad_b = diff.sum(axis=0) + 2 * penalty * b
        return loss, np.concatenate([grad_w, grad_b])

    start = np.concatenate([np.ones(m), np.zeros(k)])
    result = minimize(objective, start, jac=True, method="L-BFGS-B")
    weights, bias = result.x[:m], result.x[m:]
    fused = _softmax(_pooled_logits(logs, weights, bias, are_logs=True))
    report = {
        "nll": _nll(fused, y),
        "accuracy": float((fused.argmax(1) == y).mean()),
        "by_source": {
            name: {
                "nll": _nll(np.asarray(probabilities[name], dtype=np.float64), y),
                "accuracy": float((np.asarray(probabilities[name]).argmax(1) == y).mean()),
            }
            for name in sources
        },
        "converged": bool(result.success),
    }
    return GenreFusion(
        sources=sources,
        genres=tuple(genres),
        weights=weights,
        bias=bias,
        fitted_on=int(len(y)),
        report=report,
    )


__all__ = ["MIN_FIT", "GenreFusion", "fit_fusion"]
