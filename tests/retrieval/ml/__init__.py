"""Tests of retrieval/ml (no Django, no database)."""
