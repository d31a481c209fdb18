"""Lazy package attributes: a package names the module behind each public name, and that module is imported on
first access, so importing the package stays cheap (torch and transformers load only when a name needs them)."""

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_attributes(
    package: str, exports: Mapping[str, str], public: Iterable[str], subpackages: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` of `package`: `exports` maps a name to its module (relative to
    `package`), `subpackages` are imported whole on first access, `public` is what `dir()` lists."""
    subpackages, listed = tuple(subpackages), sorted(public)

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        if name in subpackages:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return list(listed)

    return __getattr__, __dir__
