"""`import resofilter_hf` is cheap, and the public names and the offline toy world are reachable from it."""

import subprocess
import sys


def _run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def test_toy_world_is_an_attribute_imported_on_first_use():
    code = """
import sys
import resofilter_hf
heavy = ("torch", "transformers", "trl", "datasets")
print(sorted(m for m in heavy if m in sys.modules))
toy = resofilter_hf.toy
print(sorted(m for m in heavy if m in sys.modules), "toy" in dir(resofilter_hf))
print(len(resofilter_hf.toy.make_math_problems(5)), toy.__name__)
"""
    assert _run(code) == ["[]", "[] True", "5 resofilter_hf.toy"]


def test_an_unknown_attribute_is_still_an_attribute_error():
    code = """
import resofilter_hf
try:
    resofilter_hf.toys
except AttributeError as err:
    print(err)
"""
    assert _run(code) == ["module 'resofilter_hf' has no attribute 'toys'"]


def test_every_lazy_package_lists_its_public_names_and_names_itself_in_errors():
    """The root, `toy` and `jobs` share one lazy-attribute scheme; each lists `__all__` and names itself."""
    code = """
import importlib
for name in ("resofilter_hf", "resofilter_hf.toy", "resofilter_hf.jobs"):
    package = importlib.import_module(name)
    assert dir(package) == sorted(package.__all__), name
    try:
        package.nope
    except AttributeError as err:
        print(err)
print(importlib.import_module("resofilter_hf.jobs").UsageError.__module__)
"""
    assert _run(code) == [
        "module 'resofilter_hf' has no attribute 'nope'",
        "module 'resofilter_hf.toy' has no attribute 'nope'",
        "module 'resofilter_hf.jobs' has no attribute 'nope'",
        "resofilter_hf.jobs.usage",
    ]
