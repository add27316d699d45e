"""Training: QLoRA / LoRA adapters on a base model."""
