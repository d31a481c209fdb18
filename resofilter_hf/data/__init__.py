"""Loaders for real data sets kept on disk (no download at run time)."""

from .gsm8k import final_answer, load_gsm8k


__all__ = ["final_answer", "load_gsm8k"]
