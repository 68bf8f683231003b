"""The compiler's passes, one module each (their order is ``compiler/pipeline.py``'s)."""
