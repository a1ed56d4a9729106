"""Sideman: a stage box that plays jazz piano with a human pianist."""

__version__ = "0.1.0"
