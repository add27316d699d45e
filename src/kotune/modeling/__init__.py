"""Model building and the base manifest (torch, transformers and bitsandbytes only inside functions)."""
