"""Synthetic data for retrieval/ml tests."""

from __future__ import annotations

import numpy as np


def make_images(count: int, seed: int = 0, size: int = 48):
    """Distinct synthetic pictures: a coloured background with a few coloured discs."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = (int(v) for v in rng.integers(0, size - 12, 2))
            draw.ellipse(
                [x, y, x + 12, y + 12], fill=tuple(int(v) for v in rng.integers(0, 256, 3))
            )
        images.append(image)
    return images


def clustered(
    n: int, d: int, clusters: int = 20, noise: float = 0.6, seed: int = 0, queries: int = 0
):
    """Unit vectors around `clusters` centres: realistic enough to judge ANN recall
    (uniform random vectors are not). With `queries` > 0, also returns that many query
    vectors drawn from the same clusters: (vectors, queries)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    labels = rng.integers(0, clusters, n + queries)
    x = centres[labels] + noise * rng.normal(size=(n + queries, d))
    x = x.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return (x[:n], x[n:]) if queries else x
