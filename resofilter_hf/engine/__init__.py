"""The scoring engine: which weights are scored, the hooks that capture per-sample gradients, the optimizer's
one-step delta and its reductions, the batched scorer and the in-flight recorder.

It depends on torch (and TRL's collators) only; the public API (`resofilter_hf.config`, `.trainer`,
`.selection`) is built on it, and nothing in here imports from above.
"""
