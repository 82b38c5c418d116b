"""Generation evaluation: MythraGen versus the prompt-only baseline (the paper's Table 3).

For each prompt of a prompt set, the two retrieval sets are built, their LoRAs keyed,
trained (or taken from the cache) and mixed by generation's own services, as a request's
phases do; the image is rendered with the mixed LoRAs, and the baseline with generation's
baseline prompt ("... in the style of ...") and no LoRA, with the same seed and settings.
Reported per method:

* CLIP-T: max(100 * cos(image, prompt), 0), averaged over the prompts (the user's prompt
  for both methods).
* CLIP-I: mean cosine between the image and each of its retrieved reference paintings.
* KID (fewer than 2,048 images, as here) or FID, between all generated images and all
  reference paintings, on CLIP image features (FID_CLIP/KID_CLIP: Inception weights are
  not available offline; values are comparable only within one backbone, which is named).
* Style accuracy: a linear (ridge, one-vs-rest) classifier trained on the CLIP image
  embeddings of catalog artworks predicts each image's style; accuracy against the style
  the prompt names (prompts naming no style are left out).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models import Count

from catalog.models import Artwork
from catalog.selectors import artwork_image_load
from generation.models import LoraKind
from generation.services.lora_cache import (
    lora_adapters,
    lora_entries_for,
    lora_is_ready,
    lora_mix,
    training_config_current,
)
from generation.services.rendering import renderer_get
from generation.services.retrieval_sets import baseline_prompt, retrieval_sets_build
from generation.services.training import lora_train

FID_MIN_IMAGES = 2048


def prompt_set(n: int) -> list[str]:
    """`n` prompts from the catalog's most common (genre, artist, style) with images."""
    combos = (
        Artwork.objects.exclude(image="")
        .exclude(genre=None)
        .values("genre__name", "artist__name", "style__name")
        .annotate(n=Count("id"))
        .order_by("-n", "artist__name", "style__name", "genre__name")
    )
    prompts = []
    for row in combos[:n]:
        genre = row["genre__name"].replace("_", " ")
        style = row["style__name"].replace("_", " ")
        prompts.append(f"a {genre} by {row['artist__name']}, {style}")
    return prompts


def ridge_classifier_fit(x: np.ndarray, labels: list[str], l2: float = 1e-2):
    """A linear classifier: least squares on one-hot targets with a bias (closed form)."""
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    y = np.zeros((len(labels), len(classes)))
    y[np.arange(len(labels)), [index[c] for c in labels]] = 1.0
    xb = np.hstack([x, np.ones((len(x), 1))])
    weights = np.linalg.solve(xb.T @ xb + l2 * np.eye(xb.shape[1]), xb.T @ y)
    return weights, classes


def ridge_classifier_predict(model, x: np.ndarray) -> list[str]:
    weights, classes = model
    scores = np.hstack([x, np.ones((len(x), 1))]) @ weights
    return [classes[i] for i in scores.argmax(1)]


@dataclass
class EvalResult:
    prompts: list[str]
    backbone: str
    base_model: str
    is_tiny: bool
    rows: dict[str, dict] = field(default_factory=dict)
    distance: str = "KID"
    n_references: int = 0
    classifier: dict = field(default_factory=dict)
    seconds: float = 0.0
    training: dict = field(default_factory=dict)


def _load(name: str):
    return artwork_image_load(name)


def style_classifier(clip, max_artworks: int, seed: int = 0) -> tuple[object, dict]:
    """Fit the style classifier on catalog image embeddings; report its held-out accuracy."""
    rows = list(
        Artwork.objects.exclude(image="").values_list("image", "style__name", "style_split")
    )
    rng = np.random.default_rng(seed)
    if len(rows) > max_artworks:
        rows = [rows[i] for i in sorted(rng.choice(len(rows), max_artworks, replace=False))]
    features = clip.image_features([_load(name) for name, _s, _sp in rows])
    styles = [s for _n, s, _sp in rows]
    train = [i for i, r in enumerate(rows) if r[2] != "val"]
    val = [i for i, r in enumerate(rows) if r[2] == "val"]
    info = {"artworks": len(rows), "styles": len(set(styles))}
    if val and train and len({styles[i] for i in train}) > 1:
        model = ridge_classifier_fit(features[train], [styles[i] for i in train])
        predicted = ridge_classifier_predict(model, features[val])
        info["val_accuracy"] = float(
            np.mean([p == styles[i] for p, i in zip(predicted, val, strict=True)])
        )
        info["val_n"] = len(val)
    return ridge_classifier_fit(features, styles), info


def eval_generation(
    prompts: list[str],
    *,
    k: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    size: int | None = None,
    guidance: float = 7.5,
    weights: tuple[float, float] = (0.6, 0.4),
    max_catalog: int = 2000,
    out_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Render every prompt with MythraGen and the baseline; compute the Table 3 columns."""
    from generation.ml.metrics import clip_scores, fid, get_clip, kid
    from generation.ml.provenance import write_png
    from retrieval.services import ml_device

    started = time.monotonic()
    say = progress or (lambda _m: None)
    k = k or settings.GEN_K
    steps = steps or settings.GEN_STEPS
    size = size or settings.GEN_SIZE
    training = training_config_current().to_dict()
    renderer = renderer_get()
    clip = get_clip(settings.CLIP_MODEL, ml_device(), settings.CLIP_PRECISION)
    images: dict[str, list] = {"MythraGen": [], "Prompt-only baseline": []}
    references, styles, per_prompt_refs = [], [], []
    for n, prompt in enumerate(prompts, start=1):
        say(f"[{n}/{len(prompts)}] {prompt}: retrieving")
        sets = retrieval_sets_build(prompt, k)
        sets["training"] = training
        entries = lora_entries_for(sets)
        kinds = (LoraKind.ARTIST_STYLE, LoraKind.GENRE_STYLE)
        pairs = [(entries[kind], weight) for kind, weight in zip(kinds, weights, strict=True)]
        mixed = [(e, w) for e, w in lora_mix(pairs) if w != 0]
        for entry, _w in mixed:
            if not lora_is_ready(entry):
                say(f"[{n}/{len(prompts)}] training the {entry.kind} LoRA ({entry.key[:12]})")
                lora_train(entry, job_id=None)
        loras = lora_adapters(mixed)
        common = {"seed": seed, "steps": steps, "guidance": guidance, "width": size, "height": size}
        say(f"[{n}/{len(prompts)}] rendering")
        ours = renderer.render(prompt, loras=loras, **common).image
        matches = sets["parsed"]["matches"]
        base_prompt = baseline_prompt(prompt, sets)
        baseline = renderer.render(base_prompt, loras=[], **common).image
        images["MythraGen"].append(ours)
        images["Prompt-only baseline"].append(baseline)
        ids = sorted({int(a) for data in sets["sets"].values() for a, _s in data["artworks"]})
        refs = [_load(a.image.name) for a in Artwork.objects.filter(pk__in=ids)]
        per_prompt_refs.append(refs)
        references.extend(refs)
        styles.append(matches.get("style"))
        if out_dir is not None:
            record = {"prompt": prompt, "loras": [{"name": n_, "weight": w} for n_, _p, w in loras]}
            write_png(ours, Path(out_dir) / f"{n:03d}-mythragen.png", {**record, **common})
            write_png(
                baseline, Path(out_dir) / f"{n:03d}-baseline.png", {"prompt": base_prompt, **common}
            )

    say("fitting the style classifier on catalog embeddings")
    classifier, classifier_info = style_classifier(clip, max_catalog, seed)
    ref_features = clip.image_features(references)
    distance = "KID" if 2 * len(prompts) < FID_MIN_IMAGES else "FID"
    result = EvalResult(
        prompts=prompts,
        backbone=clip.name,
        base_model=str(settings.SD_MODEL),
        is_tiny=renderer.is_stand_in,
        distance=distance,
        n_references=len(references),
        classifier=classifier_info,
        training=training,
    )
    for method, generated in images.items():
        clip_t = clip_scores(settings.CLIP_MODEL, generated, prompts)
        feats = clip.image_features(generated)
        clip_i = [
            float(np.mean(clip.image_features(refs) @ f))
            for f, refs in zip(feats, per_prompt_refs, strict=True)
        ]
        row = {
            "clip_t": float(clip_t.mean()),
            "clip_i": float(np.mean(clip_i)),
            "n_images": len(generated),
        }
        if distance == "KID" and len(generated) >= 2:
            mean, std = kid(
                feats,
                ref_features,
                subset_size=min(len(generated), 1000),
                num_subsets=50,
                seed=seed,
            )
            row.update(kid=mean, kid_std=std)
        elif distance == "FID":
            row["fid"] = fid(feats, ref_features)
        predicted = ridge_classifier_predict(classifier, feats)
        judged = [(p, s) for p, s in zip(predicted, styles, strict=True) if s]
        row["style_accuracy"] = float(np.mean([p == s for p, s in judged])) if judged else None
        row["styles_predicted"] = dict(Counter(predicted))
        result.rows[method] = row
    result.seconds = time.monotonic() - started
    return result
