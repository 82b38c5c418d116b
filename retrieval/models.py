"""Retrieval: fused embeddings and search indexes (built by the retrieval issue)."""
