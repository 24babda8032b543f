"""Untrusted pickles (2s-AGCN label files, pyskl annotations) are read with a restricted unpickler.

Only builtin containers, numbers, strings and numpy arrays (and the few numpy internals needed to rebuild
them) may be created; any other global, including every callable a malicious ``__reduce__`` would name,
raises :class:`UnsafePickleError` before it is called, so no code in the pickle runs.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

_ALLOWED: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "str",
            "bytes",
            "bytearray",
            "int",
            "float",
            "complex",
            "bool",
            "slice",
            "range",
        }
    ),
    "collections": frozenset({"OrderedDict", "defaultdict"}),
    # protocol 2 pickles rebuild bytes as _codecs.encode(str, "latin1"): a pure string function
    "_codecs": frozenset({"encode"}),
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
}
_NUMPY_SCALAR_TYPES = frozenset(
    {
        "dtype",
        "Float64DType",
        "Float32DType",
        "Float16DType",
        "Int64DType",
        "Int32DType",
        "Int16DType",
        "Int8DType",
        "UInt64DType",
        "UInt32DType",
        "UInt16DType",
        "UInt8DType",
        "BoolDType",
        "StrDType",
        "BytesDType",
        "ObjectDType",
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()) or (module == "numpy.dtypes" and name in _NUMPY_SCALAR_TYPES):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to load {module}.{name} from an untrusted pickle "
            "(only builtin containers, numbers, strings and numpy arrays are allowed)"
        )


def safe_load(path: str | os.PathLike) -> Any:
    """Load a pickle file allowing only plain data; raises :class:`UnsafePickleError` naming the file."""
    path = Path(path)
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, str(path)).load()


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    return _RestrictedUnpickler(io.BytesIO(data), source).load()
