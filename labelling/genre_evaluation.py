"""Evaluating the genre model on WikiArt's genre val split (nothing trains or calibrates on
it): the metadata model, the TF-IDF baseline, and on val artworks with an image the VQA
model and the fusion, against the issue's targets. Reads only; `eval_labelling` runs it."""

from __future__ import annotations

import time

import numpy as np
from django.conf import settings

from catalog.models import Artwork, GenreLabel, LabelSource
from catalog.selectors import artwork_image_load
from jobs.heartbeat import job_current, job_heartbeat
from labelling.genre_services import (
    _FIELDS,
    Progress,
    _record,
    genre_model_current,
    training_set,
)
from labelling.services import LabellingUnavailable, vqa_get

# The targets for the genre model on the real metadata (val split).
TARGETS = {"top1": 0.85, "ece": 0.03, "precision": 0.97, "coverage": 0.45}


def _val_truth() -> dict[int, str]:
    """Artwork id -> WikiArt's genre, for the genre val split (its latest WikiArt label:
    curators' and models' labels are not the ground truth)."""
    truth: dict[int, str] = {}
    rows = (
        GenreLabel.objects.filter(
            source=LabelSource.WIKIART,
            artwork__genre_split="val",
            retracted_at__isnull=True,
            genre__isnull=False,
        )
        .order_by("created_at", "id")
        .values_list("artwork_id", "genre__name")
    )
    for artwork_id, genre in rows.iterator(chunk_size=5000):
        truth[artwork_id] = genre
    return truth


def _section(truth: list[str], probs: np.ndarray, genres: list[str], n_buckets, threshold):
    from labelling.ml.evaluation import at_threshold, classification_report, precision_coverage

    pred = [genres[i] for i in probs.argmax(axis=1)]
    conf = np.clip(probs.max(axis=1), 0.0, 1.0)
    correct = np.asarray(pred) == np.asarray(truth)
    report = classification_report(truth, pred, conf.tolist(), genres, n_buckets=n_buckets)
    report["precision_coverage"] = precision_coverage(
        conf, correct, target_precision=TARGETS["precision"]
    )
    if threshold is not None:
        report["at_calibrated_threshold"] = at_threshold(conf, correct, threshold)
    best = report["precision_coverage"]["best"]
    chosen = report.get("at_calibrated_threshold")
    report["targets_met"] = {
        "top1": report["accuracy"] >= TARGETS["top1"],
        "ece": report["calibration"]["ece"] <= TARGETS["ece"],
        "precision_coverage": bool(best and best["coverage"] >= TARGETS["coverage"]),
        "precision_coverage_at_calibrated_threshold": bool(
            chosen
            and chosen["precision"] >= TARGETS["precision"]
            and chosen["coverage"] >= TARGETS["coverage"]
        ),
    }
    return report


def labelling_evaluate(
    *,
    sample: int = 500,
    seed: int = 0,
    baseline: bool = True,
    n_buckets: int = 15,
    progress: Progress | None = None,
) -> dict:
    """Evaluate on WikiArt's genre val split, which nothing was trained or calibrated on.

    Sections: "metadata" (every val artwork), "baseline" (the issue's TF-IDF + logistic
    regression, trained here on the same training data), and, on val artworks with an
    image (at most `sample`, drawn with `seed`): "vqa" (the paper's zero-shot VQA),
    "metadata_on_images" and "fusion". Each: top-1, macro-F1, per-genre precision and
    recall, the confusion matrix, calibration with ECE, the precision/coverage curve with
    the best threshold reaching 0.97 precision, and the precision and coverage at the
    threshold the calibration part chose (out of sample). Nothing is written.
    """
    import random

    from labelling.ml.metadata_training import train_baseline

    started = time.monotonic()
    say = progress or (lambda done, total, stage="": None)
    model = genre_model_current(train_if_missing=True, progress=say)
    genres = model.genres
    truth = {i: g for i, g in _val_truth().items() if g in genres}
    rows = [
        r
        for r in Artwork.objects.order_by("id")
        .values_list(*_FIELDS, "image")
        .iterator(chunk_size=5000)
        if r[0] in truth
    ]
    report: dict = {
        "split": "val",
        "n": len(rows),
        "model_version": model.version,
        "genres": genres,
        "targets": TARGETS,
        "sections": {},
        "skipped": {},
    }
    if not rows:
        report["seconds"] = round(time.monotonic() - started, 1)
        return report
    thresholds = model.metadata_model.meta.get("confidence_for_precision", {})
    threshold = thresholds.get(f"{TARGETS['precision']:.2f}")
    y = [truth[r[0]] for r in rows]
    records = [_record(r) for r in rows]
    say(0, 4, "metadata model on the val split")
    meta = model.predict(records)
    report["sections"]["metadata"] = _section(y, meta, genres, n_buckets, threshold)
    if baseline:
        say(1, 4, "training the baseline (TF-IDF + logistic regression)")
        _ids, train_records, train_labels = training_set()
        predict = train_baseline(train_records, train_labels, genres)
        report["sections"]["baseline"] = _section(y, predict(records), genres, n_buckets, None)
    pictured = [n for n, r in enumerate(rows) if r[5]]
    if not pictured:
        report["skipped"]["vqa"] = "no val artwork has an image (metadata only)"
    else:
        random.Random(seed).shuffle(pictured)
        pictured = sorted(pictured[:sample])
        say(2, 4, f"VQA model on {len(pictured)} val images")
        try:
            with job_heartbeat(job_current(), f"loading model {settings.VQA_MODEL}"):
                vqa = vqa_get()
        except LabellingUnavailable as exc:
            report["skipped"]["vqa"] = str(exc)
        else:
            vqa_probs = np.concatenate(
                [
                    vqa.score(
                        [artwork_image_load(rows[n][5]) for n in pictured[s : s + 16]], genres
                    )
                    for s in range(0, len(pictured), 16)
                ]
            )
            sub_y = [y[n] for n in pictured]
            sections = report["sections"]
            sections["vqa"] = _section(sub_y, vqa_probs, genres, n_buckets, None)
            sections["vqa"]["is_stand_in"] = vqa.is_stand_in
            sections["metadata_on_images"] = _section(
                sub_y, meta[pictured], genres, n_buckets, threshold
            )
            fusion = model.fusion_for(settings.VQA_MODEL)
            if fusion is None:
                report["skipped"]["fusion"] = f"no fusion fitted for {settings.VQA_MODEL}"
            else:
                fused = fusion.combine({"metadata": meta[pictured], "vqa": vqa_probs})
                sections["fusion"] = _section(sub_y, fused, genres, n_buckets, threshold)
                sections["fusion"]["weights"] = dict(
                    zip(fusion.sources, map(float, fusion.weights), strict=True)
                )
    say(4, 4, "done")
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def evaluation_markdown(report: dict) -> str:
    """The evaluation as Markdown: one summary table, then each section in full."""
    from labelling.ml.evaluation import report_markdown

    def pct(x):
        return "–" if x is None else f"{x:.3f}"

    lines = [
        f"Genre val split: {report['n']:,} artworks with a WikiArt genre; genre model "
        f"{report['model_version']}. Targets: top-1 >= {TARGETS['top1']}, ECE <= "
        f"{TARGETS['ece']}, precision >= {TARGETS['precision']} at coverage >= "
        f"{TARGETS['coverage']}.",
        "",
        "| source | n | top-1 | macro-F1 | ECE | best threshold for precision >= 0.97: "
        "coverage (threshold) | at the calibration part's threshold: precision / coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, sec in report["sections"].items():
        best = sec["precision_coverage"]["best"]
        chosen = sec.get("at_calibrated_threshold")
        lines.append(
            f"| {name} | {sec['n']:,} | {pct(sec['accuracy'])} | {pct(sec['macro_f1'])} | "
            f"{pct(sec['calibration']['ece'])} | "
            + (f"{best['coverage']:.3f} ({best['threshold']:.3f})" if best else "none")
            + " | "
            + (
                f"{chosen['precision']:.3f} / {chosen['coverage']:.3f} "
                f"(>= {chosen['threshold']:.3f})"
                if chosen
                else "–"
            )
            + " |"
        )
    for name, why in report.get("skipped", {}).items():
        lines.append(f"\n{name}: not measured ({why})")
    for name, sec in report["sections"].items():
        lines += ["", f"## {name}", "", report_markdown(sec)]
        curve = sec["precision_coverage"]["curve"]
        lines += [
            "### Precision / coverage",
            "",
            "| threshold | coverage | precision |",
            "|---|---|---|",
        ]
        lines += [
            f"| {c['threshold']:.3f} | {c['coverage']:.3f} | {c['precision']:.3f} |" for c in curve
        ]
    return "\n".join(lines) + "\n"
