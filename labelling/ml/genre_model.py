"""The genre model as a model role: one trained version (metadata model + its fusion with
the VQA model, when one was fitted), and the versioned folder it lives in.

On disk, under one root (MYTHRAGEN_MODELS_DIR/genre-model)::

    root/
      CURRENT                 the version labelling uses (one line)
      versions/<version>/     model.json + arrays.npz (`metadata.MetadataGenreModel`),
                              fusion.json (`fusion.GenreFusion`, if fitted), meta.json

A version is written to a temporary folder, renamed into `versions/` and only then named
in CURRENT (replaced atomically), so a reader sees the old version or the new one. A
version's name carries its training data's digest: `<UTC time>-<digest[:12]>`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.errors import ModelUnavailable
from mlcore.role import ModelRole, RoleRegistry

from .fusion import GenreFusion
from .metadata import Metadata, MetadataGenreModel

CURRENT_FILE = "CURRENT"
VERSIONS_DIR = "versions"


def version_name(digest: str) -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{digest[:12]}"


def current_folder(root: Path) -> Path | None:
    """The folder of the version CURRENT names, or None if none is published."""
    root = Path(root)
    try:
        name = (root / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    folder = root / VERSIONS_DIR / name
    return folder if name and folder.is_dir() else None


def publish(
    root: Path,
    version: str,
    model: MetadataGenreModel,
    fusion: GenreFusion | None,
    meta: dict[str, Any],
    *,
    keep: int = 5,
) -> Path:
    """Write a version and make it current; keep the newest `keep` versions."""
    root = Path(root)
    (root / VERSIONS_DIR).mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{version}-{os.getpid()}"
    final = root / VERSIONS_DIR / version
    try:
        model.save(tmp)
        if fusion is not None:
            (tmp / "fusion.json").write_text(json.dumps(fusion.to_json()), encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        for path in tmp.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / f".tmp-{CURRENT_FILE}-{os.getpid()}-{threading.get_ident()}"
    pointer.write_text(version + "\n", encoding="utf-8")
    os.replace(pointer, root / CURRENT_FILE)
    versions = sorted(p.name for p in (root / VERSIONS_DIR).iterdir() if p.is_dir())
    for old in versions[: max(0, len(versions) - keep)]:
        if old != version:
            shutil.rmtree(root / VERSIONS_DIR / old, ignore_errors=True)
    return final


class GenreModel(ModelRole):
    """One published genre model version (its folder is the model id).

    `predict(records)`: the metadata model's calibrated probabilities; `fuse(...)`: those
    fused with the VQA model's, when a fusion was fitted for that VQA model.
    """

    what = "genre model"

    def unavailable(self, reason: str, exc: BaseException | None = None) -> ModelUnavailable:
        error = ModelUnavailable(
            self.what,
            self.model_id,
            reason,
            setting=self.setting,
            hint="or train one: `python manage.py train_genre_model`",
        )
        if exc is not None:
            error.__cause__ = exc
        return error

    def _load(self) -> None:
        folder = Path(self.model_id)
        if not (folder / "model.json").is_file():
            raise self.unavailable("no trained genre model in that folder")
        try:
            self._model_metadata = MetadataGenreModel.load(folder)
        except (OSError, ValueError, KeyError) as exc:
            raise self.unavailable(f"unreadable: {exc}", exc) from exc
        fusion_file = folder / "fusion.json"
        self._model_fusion = (
            GenreFusion.from_json(json.loads(fusion_file.read_text(encoding="utf-8")))
            if fusion_file.is_file()
            else None
        )
        meta_file = folder / "meta.json"
        self.meta = json.loads(meta_file.read_text("utf-8")) if meta_file.is_file() else {}

    @property
    def version(self) -> str:
        return Path(self.model_id).name

    @property
    def genres(self) -> list[str]:
        return list(self.load()._model_metadata.genres)

    @property
    def metadata_model(self) -> MetadataGenreModel:
        return self.load()._model_metadata

    @property
    def fusion(self) -> GenreFusion | None:
        return self.load()._model_fusion

    def fusion_for(self, vqa_model_id: str) -> GenreFusion | None:
        """The fusion fitted with that VQA model, or None."""
        fusion = self.fusion
        if fusion is None or fusion.report.get("vqa_model") != vqa_model_id:
            return None
        return fusion

    def predict(self, records: list[Metadata]) -> np.ndarray:
        return self.load()._model_metadata.predict_proba(records)


_registry = RoleRegistry()


def get_genre_model(folder: Path | str, setting: str | None = None) -> GenreModel:
    """The process-wide `GenreModel` of a version folder (versions never change once
    published, so one copy per folder is enough)."""
    key = str(folder)
    return _registry.get(key, lambda: GenreModel(key, device="cpu", setting=setting))


def clear_genre_models() -> None:
    _registry.clear()


__all__ = [
    "GenreModel",
    "clear_genre_models",
    "current_folder",
    "get_genre_model",
    "publish",
    "version_name",
]
