"""Pure machine-learning code for labelling: captions, VQA genre scores, evaluation.

Nothing here imports Django, DRF or Celery (a test enforces it). The modules take and
return PIL images, numpy arrays, paths and plain data; the labelling services translate
between the ORM and these. torch and transformers are imported lazily, inside the
functions that need them, so importing this package is cheap for the web process.
"""
