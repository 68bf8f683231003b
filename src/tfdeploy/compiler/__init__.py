"""The compiler: named passes over a printable plan (see ``pipeline.py`` and
docs/architecture.md)."""
