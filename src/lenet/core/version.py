"""The package version, below everything so any module may record it."""

__version__ = "0.1.0"
