"""Fixtures for retrieval/ml tests: offline hub, one torch thread, the tiny BLIP-2 model."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcore.threads import torch_threads


@pytest.fixture(scope="session", autouse=True)
def _offline_single_thread():
    """No hub access (fail fast instead of retrying the network) and one torch thread."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        # huggingface_hub reads the variable once, at import; patch the constant too in
        # case another test imported it first.
        import huggingface_hub.constants as hub_constants

        mp.setattr(hub_constants, "HF_HUB_OFFLINE", True)
        with torch_threads(1):
            yield


@pytest.fixture(scope="session")
def tiny_blip2_dir(tmp_path_factory, _offline_single_thread) -> Path:
    """The tiny BLIP-2 retrieval model, built once per session (treat as read-only)."""
    from retrieval.ml.tiny import build_tiny_blip2_retrieval

    return build_tiny_blip2_retrieval(tmp_path_factory.mktemp("models") / "tiny-blip2")


@pytest.fixture(scope="session")
def blip2(tiny_blip2_dir):
    from retrieval.ml.embedders import Blip2Embedder

    return Blip2Embedder(str(tiny_blip2_dir), setting="MYTHRAGEN_RETRIEVAL_MODEL").load()


@pytest.fixture(scope="session")
def minilm(_offline_single_thread):
    from retrieval.ml.embedders import MiniLMEmbedder

    return MiniLMEmbedder(setting="MYTHRAGEN_TEXT_MODEL").load()
