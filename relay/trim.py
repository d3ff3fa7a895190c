"""Give freed heap memory back to the operating system after a mass expiry.

CPython's object allocator returns whole arenas itself, but memory freed through
``malloc`` (bodies, large buffers, dicts) stays in glibc's heap until ``malloc_trim``
is called, so RSS stays high after thousands of rooms end at once (measured in
docs/benchmarks.md, "Memory after mass expiry"). Trimming costs a few milliseconds, so
the relay calls it only after a housekeeping pass that ended many rooms, at most once a
minute. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
try:
    _libc_name = ctypes.util.find_library("c")
    if _libc_name:
        _libc = ctypes.CDLL(_libc_name)
        _trim = getattr(_libc, "malloc_trim", None)
except OSError:  # pragma: no cover - no libc to load
    _trim = None


def trim_heap() -> bool:
    """Return free heap pages to the OS; ``False`` where ``malloc_trim`` does not exist."""
    if _trim is None:
        return False
    _trim(0)
    return True


__all__ = ["trim_heap"]
