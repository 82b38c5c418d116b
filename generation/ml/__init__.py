"""Pure-ML generation layer: LoRA training, rendering, provenance and metrics.

Never imports Django, DRF or Celery (a test enforces it); takes and returns paths, PIL
images, numpy arrays and dataclasses. Heavy libraries (torch, diffusers) are imported
inside functions, so importing these modules is cheap for the web process.
"""
