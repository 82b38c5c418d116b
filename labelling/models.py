"""Labelling: captions and VQA genre labels (the GenreLabel history lives in catalog)."""
