"""The package version, in the lowest layer so every module can import it at module level
(``gvlmodel.__version__`` re-exports it)."""

__version__ = "0.1.0"
