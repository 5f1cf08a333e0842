"""Text-to-video generation: the pipeline wrapper, the embedded default model, its procedural world and training."""
