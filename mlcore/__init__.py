"""What every model role shares (no Django, no torch at import).

A *role* is one job a model does for the project: retrieval embedder, captioner, genre
VQA, Stable Diffusion renderer, LoRA trainer, safety checker, CLIP evaluator. Each app's
`ml/` package has one wrapper class per role, and all of them are `ModelRole`s
(`mlcore.role`): lazy idempotent `load()`, `unload()`, an explicit device and precision,
`is_stand_in` for the models this project builds itself, and one error,
`ModelUnavailable`, that names the setting to change. `mlcore.real_size` holds the
published configurations of every role, for real-size stand-ins with random weights.
"""
