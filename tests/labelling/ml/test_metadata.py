"""The metadata genre model on synthetic catalogs whose genre signals are known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelling.ml.errors import LabellingInputError
from labelling.ml.metadata import Metadata, MetadataGenreModel, fit_temperature, title_key
from labelling.ml.metadata_training import data_digest, train_baseline, train_metadata_model

GENRES = ["landscape", "portrait", "still_life", "cityscape"]
WORDS = {
    "landscape": ["hills", "river", "meadow", "valley"],
    "portrait": ["portrait", "head", "lady", "man"],
    "still_life": ["pears", "vase", "jug", "flowers"],
    "cityscape": ["street", "bridge", "harbour", "square"],
}


def synthetic(n: int, seed: int, noise: float = 0.15):
    """Titles carry a genre word (except a `noise` share, random words), artists favour
    two genres, styles favour none."""
    painters = np.random.default_rng(0)  # the same painters in every sample
    artists = [f"painter-{i}" for i in range(40)]
    favourite = {a: painters.choice(len(GENRES), 2, replace=False) for a in artists}
    rng = np.random.default_rng(seed)
    records, labels = [], []
    for _ in range(n):
        artist = artists[rng.integers(len(artists))]
        genre = GENRES[rng.choice(favourite[artist]) if rng.random() < 0.8 else rng.integers(4)]
        if rng.random() < noise:
            word = rng.choice([w for ws in WORDS.values() for w in ws])
        else:
            word = rng.choice(WORDS[genre])
        title = f"{rng.choice(['The', 'A', 'Evening', 'Morning'])} {word} {rng.integers(1, 9)}"
        style = f"style-{rng.integers(5)}"
        year = int(rng.integers(1850, 1950)) if rng.random() < 0.7 else None
        records.append(Metadata(title=title, artist=artist, style=style, year=year))
        labels.append(genre)
    return records, labels


@pytest.fixture(scope="module")
def trained():
    records, labels = synthetic(3000, seed=1)
    return train_metadata_model(records, labels, GENRES, seed=0), records, labels


def _ece(probs, y, buckets=10):
    conf, correct = probs.max(1), probs.argmax(1) == y
    edges = np.linspace(0, 1, buckets + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return total


def test_learns_the_signals_and_is_calibrated_on_unseen_works(trained):
    result, _records, _labels = trained
    test_records, test_labels = synthetic(2000, seed=2)
    y = np.array([GENRES.index(g) for g in test_labels])
    probs = result.model.predict_proba(test_records)
    assert probs.shape == (2000, 4)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-9)
    accuracy = (probs.argmax(1) == y).mean()
    assert accuracy > 0.8  # title words (85% right) and the artists' favourites
    assert _ece(probs, y) < 0.04


def test_held_out_probabilities_never_saw_their_labels():
    """Labels that are pure noise: what the model learns from them is noise, so the
    held-out probabilities (out of fold, stacker included) must be at chance (0.25)."""
    records, _ = synthetic(1500, seed=3)
    rng = np.random.default_rng(4)
    noise = [GENRES[i] for i in rng.integers(0, 4, len(records))]
    result = train_metadata_model(records, noise, GENRES, seed=0)
    y = np.array([GENRES.index(g) for g in noise])
    held_out = (result.held_out.argmax(1) == y).mean()
    assert held_out < 0.3
    assert result.calibration.sum() == pytest.approx(0.15 * len(records), abs=4)


def test_saved_as_arrays_and_json_and_reloaded_identically(trained, tmp_path):
    result, records, _labels = trained
    result.model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["arrays.npz", "model.json"]
    with np.load(tmp_path / "m" / "arrays.npz") as arrays:  # allow_pickle=False by default
        assert all(arrays[name].dtype != object for name in arrays.files)
    again = MetadataGenreModel.load(tmp_path / "m")
    np.testing.assert_allclose(
        again.predict_proba(records[:200]), result.model.predict_proba(records[:200])
    )
    state = json.loads((tmp_path / "m" / "model.json").read_text())
    state["feature_version"] = "metadata-0"
    (tmp_path / "m" / "model.json").write_text(json.dumps(state))
    with pytest.raises(LabellingInputError, match="another format"):
        MetadataGenreModel.load(tmp_path / "m")


def test_thresholds_chosen_on_the_calibration_part(trained):
    result, _records, _labels = trained
    thresholds = result.model.meta["confidence_for_precision"]
    assert set(thresholds) == {"0.90", "0.95", "0.97", "0.99"}
    known = [t for t in thresholds.values() if t is not None]
    assert known == sorted(known)


def test_digest_follows_the_data():
    records, labels = synthetic(50, seed=5)
    digest = data_digest(records, labels, list(range(50)))
    assert digest == data_digest(records, labels, list(range(50)))
    assert digest != data_digest(records, [labels[1], *labels[1:]], list(range(50)))
    assert digest != data_digest(records, labels, list(range(1, 51)))


def test_refuses_what_it_cannot_train_on():
    records, labels = synthetic(200, seed=6)
    with pytest.raises(LabellingInputError, match="not in the genre list"):
        train_metadata_model(records, labels, GENRES[:3])
    with pytest.raises(LabellingInputError, match="too little"):
        train_metadata_model(records[:20], labels[:20], GENRES)
    with pytest.raises(LabellingInputError, match="Metadata records"):
        train_metadata_model([("a title",)] * 200, labels, GENRES)


def test_title_keys_group_numbered_series():
    assert title_key("Composition No. 3") == title_key("composition no 12") == "composition no"
    assert title_key("Café à Arles") == "cafe a arles"


def test_temperature_undoes_overconfidence():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 4000)
    logits = rng.normal(size=(4000, 4))
    logits[np.arange(4000), y] += 1.0
    assert fit_temperature(logits * 3, y) == pytest.approx(3, rel=0.15)


def test_the_baseline_is_a_plain_classifier(trained):
    _result, records, labels = trained
    predict = train_baseline(records, labels, GENRES)
    test_records, test_labels = synthetic(500, seed=8)
    probs = predict(test_records)
    y = np.array([GENRES.index(g) for g in test_labels])
    assert probs.shape == (500, 4) and (probs.argmax(1) == y).mean() > 0.7
