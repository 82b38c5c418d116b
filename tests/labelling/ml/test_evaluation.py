"""classification_report and report_markdown on a hand-computed example."""

from __future__ import annotations

import json

import pytest

from labelling.ml.errors import LabellingInputError
from labelling.ml.evaluation import classification_report, report_markdown

LABELS = ["landscape", "portrait", "still_life"]
L, P, S = LABELS
Y_TRUE = [L, L, L, P, P, S]
Y_PRED = [L, L, P, P, S, S]
CONF = [0.9, 0.75, 0.55, 0.95, 0.3, 0.2]
#         ok    ok    x     ok    x    ok


@pytest.fixture
def report():
    return classification_report(Y_TRUE, Y_PRED, CONF, LABELS, n_buckets=5)


def test_accuracy_and_confusion_matrix(report):
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_per_label_precision_recall_f1(report):
    per = report["per_label"]
    assert per[L] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert per[P] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per[S] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_calibration_buckets_and_ece(report):
    buckets = report["calibration"]["buckets"]
    assert [b["count"] for b in buckets] == [0, 2, 1, 1, 2]
    assert [b["lower"] for b in buckets] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    assert buckets[0]["mean_confidence"] is None and buckets[0]["accuracy"] is None
    # 0.2 sits in [0.2, 0.4), with 0.3.
    assert buckets[1]["mean_confidence"] == pytest.approx(0.25)
    assert buckets[1]["accuracy"] == pytest.approx(0.5)
    assert (buckets[2]["mean_confidence"], buckets[2]["accuracy"]) == pytest.approx((0.55, 0.0))
    assert (buckets[3]["mean_confidence"], buckets[3]["accuracy"]) == pytest.approx((0.75, 1.0))
    assert (buckets[4]["mean_confidence"], buckets[4]["accuracy"]) == pytest.approx((0.925, 1.0))
    expected_ece = (2 * 0.25 + 0.55 + 0.25 + 2 * 0.075) / 6
    assert report["calibration"]["ece"] == pytest.approx(expected_ece)


def test_edges_zero_and_one_are_inside():
    out = classification_report([L, L], [L, P], [0.0, 1.0], LABELS, n_buckets=4)
    counts = [b["count"] for b in out["calibration"]["buckets"]]
    assert counts == [1, 0, 0, 1]
    # Right with confidence 0, wrong with confidence 1: as badly calibrated as can be.
    assert out["calibration"]["ece"] == pytest.approx(1.0)


def test_a_label_never_predicted_has_zero_precision():
    out = classification_report([L, P], [L, L], [0.6, 0.6], LABELS)
    assert out["per_label"][P] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert out["per_label"][S]["support"] == 0


def test_report_is_json_serialisable_and_empty_input_is_fine(report):
    json.dumps(report)
    empty = classification_report([], [], [], LABELS)
    assert empty["n"] == 0 and empty["accuracy"] == 0.0
    assert empty["calibration"]["ece"] == 0.0
    assert all(b["count"] == 0 for b in empty["calibration"]["buckets"])


def test_markdown_tables(report):
    text = report_markdown(report)
    assert "accuracy 0.667" in text
    assert "| landscape | 1.000 | 0.667 | 0.800 | 3 |" in text
    assert "| true \\ predicted | landscape | portrait | still_life |" in text
    assert "| landscape | 2 | 1 | 0 |" in text
    assert "| 0.80–1.00 | 2 | 0.925 | 1.000 |" in text
    assert "| 0.00–0.20 | 0 | – | – |" in text


@pytest.mark.parametrize(
    ("y_true", "y_pred", "conf", "labels"),
    [
        ([L], [L, L], [0.5, 0.5], LABELS),  # lengths differ
        ([L], ["cubism"], [0.5], LABELS),  # unknown label
        ([L], [L], [1.5], LABELS),  # confidence out of range
        ([L], [L], [float("nan")], LABELS),
        ([L], [L], [0.5], [L, L]),  # repeated labels
        ([L], [L], [0.5], []),
    ],
)
def test_bad_input_raises(y_true, y_pred, conf, labels):
    with pytest.raises(LabellingInputError):
        classification_report(y_true, y_pred, conf, labels)
