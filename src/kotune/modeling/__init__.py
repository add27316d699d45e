"""Model building and loading (torch, transformers and bitsandbytes are imported only here)."""
