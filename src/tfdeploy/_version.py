"""The package version (one place, imported by the package and the file writer)."""

__version__ = "1.0.0.dev0"
