"""Evaluate genre labels against ground truth: accuracy, per-genre P/R/F1, confusion, calibration.

numpy only. Conventions: a ratio with a zero denominator is 0.0 (as scikit-learn's
`zero_division=0`); confusion-matrix rows are true labels and columns predicted labels,
both in `labels` order; confidence buckets are equal-width over [0, 1], each closed on
the left and open on the right except the last, which includes 1.0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import LabellingInputError


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def _bucket_index(confidences: np.ndarray, n_buckets: int) -> np.ndarray:
    # Edges as i / n (not linspace) so that a literal such as 0.2 lands in the bucket
    # that starts at 0.2, as a reader expects.
    edges = np.arange(n_buckets + 1) / n_buckets
    index = np.searchsorted(edges, confidences, side="right") - 1
    return np.clip(index, 0, n_buckets - 1)


def classification_report(
    y_true: list[str],
    y_pred: list[str],
    confidences: list[float],
    labels: list[str],
    n_buckets: int = 5,
) -> dict[str, Any]:
    """A JSON-serialisable report of predicted vs true labels.

    Keys: `n`, `labels`, `accuracy`, `macro_f1`, `per_label` ({label: precision, recall,
    f1, support}), `confusion_matrix` (list of lists, rows true, columns predicted),
    `calibration` ({`n_buckets`, `buckets`: [{lower, upper, count, mean_confidence,
    accuracy}], `ece`}). An empty bucket has `mean_confidence` and `accuracy` None. The
    expected calibration error is sum over buckets of count / n * |accuracy - mean
    confidence|.
    """
    labels = list(labels)
    if not labels:
        raise LabellingInputError("labels must not be empty")
    if len(set(labels)) != len(labels):
        raise LabellingInputError("labels must not repeat")
    if not len(y_true) == len(y_pred) == len(confidences):
        raise LabellingInputError(
            f"y_true, y_pred and confidences differ in length: "
            f"{len(y_true)}, {len(y_pred)}, {len(confidences)}"
        )
    if not isinstance(n_buckets, int) or n_buckets < 1:
        raise LabellingInputError(f"n_buckets must be a positive integer, not {n_buckets!r}")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({str(y) for y in [*y_true, *y_pred] if y not in index})
    if unknown:
        raise LabellingInputError(f"labels not in the label list: {', '.join(unknown)}")
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if conf.size and (not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1):
        raise LabellingInputError("confidences must lie in [0, 1]")

    n, k = len(y_true), len(labels)
    true_idx = np.array([index[y] for y in y_true], dtype=np.int64)
    pred_idx = np.array([index[y] for y in y_pred], dtype=np.int64)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true_idx, pred_idx), 1)
    correct = true_idx == pred_idx

    per_label: dict[str, dict[str, float | int]] = {}
    for i, label in enumerate(labels):
        tp = int(confusion[i, i])
        precision = _ratio(tp, confusion[:, i].sum())
        recall = _ratio(tp, confusion[i, :].sum())
        per_label[label] = {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": int(confusion[i, :].sum()),
        }

    buckets = []
    ece = 0.0
    bucket_of = _bucket_index(conf, n_buckets)
    for b in range(n_buckets):
        in_bucket = bucket_of == b
        count = int(in_bucket.sum())
        mean_conf = float(conf[in_bucket].mean()) if count else None
        accuracy = float(correct[in_bucket].mean()) if count else None
        if count:
            ece += count / n * abs(accuracy - mean_conf)
        buckets.append(
            {
                "lower": b / n_buckets,
                "upper": (b + 1) / n_buckets,
                "count": count,
                "mean_confidence": mean_conf,
                "accuracy": accuracy,
            }
        )

    return {
        "n": n,
        "labels": labels,
        "accuracy": _ratio(correct.sum(), n),
        "macro_f1": float(np.mean([m["f1"] for m in per_label.values()])),
        "per_label": per_label,
        "confusion_matrix": confusion.tolist(),
        "calibration": {"n_buckets": n_buckets, "buckets": buckets, "ece": float(ece)},
    }


def precision_coverage(
    confidences, correct, *, target_precision: float = 0.97, points: int = 20
) -> dict[str, Any]:
    """How precise the labels are when only those at or above a confidence threshold are
    kept, and how many are kept.

    `curve`: for thresholds at the 0, 1/points, ..., 1 quantiles of the confidences (and
    the target), {threshold, coverage, precision, n}. `best`: the lowest threshold at
    which the kept labels reach `target_precision` (the largest coverage that still does),
    or None. Choosing it on the data it is measured on flatters it: apply a threshold
    chosen elsewhere with `at_threshold`.
    """
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != ok.shape:
        raise LabellingInputError("confidences and correct differ in length")
    n = conf.size
    out: dict[str, Any] = {"n": int(n), "target_precision": target_precision, "curve": []}
    if n == 0:
        out["best"] = None
        return out
    order = np.argsort(-conf, kind="stable")
    sorted_conf, hits = conf[order], np.cumsum(ok[order])
    # Ties: a threshold keeps every label at or above it, so only the last position of
    # each run of equal confidences is a possible cut.
    last = np.r_[sorted_conf[1:] != sorted_conf[:-1], True]
    kept = np.arange(1, n + 1)[last]
    precision = hits[last] / kept
    thresholds = sorted_conf[last]
    reaching = np.flatnonzero(precision >= target_precision)
    if len(reaching):
        i = int(reaching[-1])
        out["best"] = {
            "threshold": float(thresholds[i]),
            "coverage": float(kept[i] / n),
            "precision": float(precision[i]),
            "n": int(kept[i]),
        }
    else:
        out["best"] = None
    quantiles = np.unique(np.quantile(conf, np.linspace(0, 1, points + 1)))
    for threshold in sorted({*quantiles.tolist()}, reverse=True):
        out["curve"].append(at_threshold(conf, ok, float(threshold)))
    return out


def at_threshold(confidences, correct, threshold: float) -> dict[str, Any]:
    """Coverage and precision of the labels whose confidence is at least `threshold`."""
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    keep = conf >= threshold
    kept = int(keep.sum())
    return {
        "threshold": float(threshold),
        "coverage": _ratio(kept, conf.size),
        "precision": _ratio(ok[keep].sum(), kept),
        "n": kept,
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *map(line, rows)]


def report_markdown(report: dict[str, Any]) -> str:
    """The report from `classification_report` as Markdown: summary and four tables."""
    labels = report["labels"]
    calibration = report["calibration"]
    lines = [
        f"**{report['n']} labels** · accuracy {_fmt(report['accuracy'])} · "
        f"macro F1 {_fmt(report['macro_f1'])} · ECE {_fmt(calibration['ece'])}",
        "",
        "### Per genre",
        "",
    ]
    lines += _table(
        ["genre", "precision", "recall", "F1", "support"],
        [
            [
                label,
                _fmt(m["precision"]),
                _fmt(m["recall"]),
                _fmt(m["f1"]),
                str(m["support"]),
            ]
            for label, m in report["per_label"].items()
        ],
    )
    lines += ["", "### Confusion matrix (rows: true, columns: predicted)", ""]
    lines += _table(
        ["true \\ predicted", *labels],
        [
            [label, *(str(c) for c in row)]
            for label, row in zip(labels, report["confusion_matrix"], strict=True)
        ],
    )
    lines += ["", "### Calibration", ""]
    lines += _table(
        ["confidence", "count", "mean confidence", "accuracy"],
        [
            [
                f"{b['lower']:.2f}–{b['upper']:.2f}",
                str(b["count"]),
                _fmt(b["mean_confidence"]),
                _fmt(b["accuracy"]),
            ]
            for b in calibration["buckets"]
        ],
    )
    return "\n".join(lines) + "\n"
