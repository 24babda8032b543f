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
    """A pickle asked for a global outside the allow-list; nothing of it ran.

    Example:
        >>> import os
        >>> safe_loads(pickle.dumps(os.system))
        Traceback (most recent call last):
        lightning_skel.data.safe_pickle.UnsafePickleError: <bytes>: refusing to load ...system from ...
    """


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
    """Load the pickle file at ``path``, allowing only plain data; a global is :class:`UnsafePickleError`.

    Example:
        >>> with open("labels.pkl", "wb") as f:
        ...     pickle.dump((["S001C001P001R001A001"], [0]), f)
        >>> safe_load("labels.pkl")
        (['S001C001P001R001A001'], [0])
    """
    path = Path(path)
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, str(path)).load()


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """:func:`safe_load` of the bytes ``data``; ``source`` names them in the error.

    Example:
        >>> safe_loads(pickle.dumps({"label": 3, "frame_dir": "S001C001P001R001A004"}))
        {'label': 3, 'frame_dir': 'S001C001P001R001A004'}
    """
    return _RestrictedUnpickler(io.BytesIO(data), source).load()
