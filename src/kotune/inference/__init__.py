"""Inference: the exported adapter's settings, the one model-loading path, the engine."""
