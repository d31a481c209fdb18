"""One way to refuse a value outside a fixed set of choices, so every such error reads the same.

The message names where the option was given, the option, the value, and every accepted value, e.g.
``ResonanceConfig: resonance_metric='median' is not one of 'mean_abs', 'l2', 'max_abs', 'std'``.
"""

from collections.abc import Collection


def check_option(where: str, name: str, value: object, allowed: Collection[str]) -> None:
    """Raise a ValueError unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{where}: {name}={value!r} is not one of {', '.join(repr(a) for a in allowed)}")
