"""Generation: LoRA training, the LoRA cache and render jobs (built by the generation issue)."""
