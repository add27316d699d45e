"""kotune: Korean conversations and documents in, a persona chatbot (QLoRA adapter) out."""

__version__ = "0.1.0"
