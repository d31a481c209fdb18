"""Loaders for real data sets kept on disk (no download at run time)."""

from .gsm8k import load_gsm8k


__all__ = ["load_gsm8k"]
