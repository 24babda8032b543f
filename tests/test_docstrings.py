"""Docstrings in the torchattacks manner, and the package's doctests.

Every public class and function of every module of the package (:data:`CHECKED`) has a docstring that names
each constructor argument and holds a ``>>>`` example. Every doctest of every module of the package passes.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import pkgutil
import re

import pytest

import lightning_skel


def package_modules() -> list[str]:
    """Every module of the package, found by walking it (subpackages are imported to be walked)."""
    found = [info.name for info in pkgutil.walk_packages(lightning_skel.__path__, "lightning_skel.")]
    return sorted([lightning_skel.__name__, *found])


MODULES = package_modules()
# The modules whose public objects must document themselves: every one of the package.
CHECKED = MODULES


def public_objects(module_name: str) -> list[tuple[str, object]]:
    """The classes and functions a module defines whose names do not start with ``_``."""
    module = importlib.import_module(module_name)
    out = []
    for name, obj in vars(module).items():
        plain = inspect.unwrap(obj) if callable(obj) else obj  # functools.cache keeps the function inside
        if name.startswith("_") or not (inspect.isclass(plain) or inspect.isfunction(plain)):
            continue
        if getattr(plain, "__module__", None) == module_name:
            out.append((name, obj))
    return out


OBJECTS = [(m, name) for m in CHECKED for name, _ in public_objects(m)]


def own_doc(obj: object) -> str:
    """The object's own docstring: a class's, not one inherited or the signature a dataclass makes up."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else inspect.unwrap(obj).__doc__
    return inspect.cleandoc(doc or "")


def init_params(cls: type) -> list[str]:
    """The parameters of a class's ``__init__`` but ``self``; none for a builtin one (``object``'s)."""
    init = cls.__init__
    if not inspect.isfunction(init):
        return []
    return [p for p in inspect.signature(init).parameters if p != "self"]


def test_the_lists_are_what_they_claim():
    """The walk finds the whole package: a module it missed (a folder without ``__init__.py``) would drop out
    of the checks silently."""
    assert CHECKED == MODULES
    assert {
        "lightning_skel",
        "lightning_skel.models.stgcn",
        "lightning_skel.data.readers.ntu",
        "lightning_skel.utils",
        "lightning_skel.attack_run",
        "lightning_skel.skeleton.features",
        "lightning_skel.certify.smoothing",
    } <= set(CHECKED)
    assert len(OBJECTS) > 250
    names = {name for _, name in OBJECTS}
    assert {
        "STGCN",
        "official_ntu_graph",
        "Layout",
        "Registry",
        "save_npz",
        "run_attack",
        "bone_lengths",
        "load_classifier",
        "run_zoo",
    } <= names


@pytest.mark.parametrize(("module", "name"), OBJECTS, ids=[f"{m}.{n}" for m, n in OBJECTS])
def test_public_object_is_documented(module, name):
    obj = dict(public_objects(module))[name]
    doc = own_doc(obj)
    assert doc, f"{module}.{name} has no docstring"
    docs = doc
    if inspect.isclass(obj):
        init = vars(obj).get("__init__")
        docs += "\n" + inspect.cleandoc(getattr(init, "__doc__", None) or "")
        missing = [p for p in init_params(obj) if not re.search(rf"\b{re.escape(p)}\b", docs)]
        assert not missing, f"{module}.{name}: the docstring does not name the argument(s) {missing}"
    assert ">>>" in docs, f"{module}.{name}: the docstring has no >>> example"


@pytest.mark.parametrize("module", MODULES)
def test_doctests_pass(module, tmp_path, monkeypatch):
    """The examples run in a scratch folder (some write files) and print what they say they print."""
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(module)
    tests = doctest.DocTestFinder(exclude_empty=True).find(mod, module)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    for test in sorted(tests, key=lambda t: t.name):
        try:
            runner.run(test, out=report.write)
        finally:
            test.globs.clear()  # the copies of the module's globals, and whatever the examples made
    assert runner.failures == 0, (
        f"{runner.failures} of {runner.tries} example(s) of {module} failed:\n{report.getvalue()}"
    )
