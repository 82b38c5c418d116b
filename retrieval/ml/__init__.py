"""Pure machine-learning side of retrieval: embedders, fused vectors, FAISS indexes, metrics.

Nothing under `retrieval/ml/` imports Django, Django REST framework or Celery: it takes and
returns paths, PIL images, numpy arrays and dataclasses. Heavy libraries (torch,
transformers, sentence-transformers, faiss) are imported inside the modules that need them,
and this package's `__init__` imports none of them, so `import retrieval.ml` stays cheap.
"""
