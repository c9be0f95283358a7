"""A restricted unpickler for the CIFAR "python version" batches.

Plain `pickle.load` runs whatever callable a file names, so a doctored `data_batch_1` could run a
shell command. CIFAR batches hold only dicts, lists, strings, ints and numpy arrays, so the only
globals a genuine batch names are numpy's array and dtype reconstructors; everything else is
refused before it is imported.
"""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

from resnet_cifar.errors import DataError


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) → object, for every global a CIFAR batch may name; taken from numpy's own
    pickling, so numpy 1 (`numpy.core`) and 2 (`numpy._core`) spellings both resolve."""
    reconstruct = np.zeros(1).__reduce__()[0]  # ndarray._reconstruct
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol-5 arrays
    scalar = np.int64(0).__reduce__()[0]  # a numpy scalar inside a list
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes at protocol <= 2 as _codecs.encode(str, "latin1"): a pure data
        # transform, needed for arrays saved that way.
        ("_codecs", "encode"): codecs.encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in `_allowed_globals()`."""

    def __init__(self, file, *, source: str, encoding: str = "bytes"):
        super().__init__(file, encoding=encoding)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name} from {self._source}: CIFAR "
                            "batches contain only numpy arrays, lists and strings; the file may "
                            "be malicious") from None


def safe_loads(data: bytes, *, source: str) -> Any:
    """Unpickle `data` (the bytes of a file named `source` in messages) with the allowlist.
    Python 2 pickles come back with bytes keys (encoding="bytes"); Python 3 ones keep str keys."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        raise DataError(f"{source} is not a readable CIFAR batch ({type(err).__name__}: {err}); "
                        "the file is truncated or corrupt: download or extract it again") from None
