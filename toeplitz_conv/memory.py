"""The memory limit: every large array is estimated and refused before it is allocated.

A matrix, index table or dense copy whose estimated size exceeds the limit raises a
``ValueError`` that gives the estimate, what it is made of and the limit in force. The default
limit is half of the memory available when the array is asked for; the
``TOEPLITZ_CONV_MAX_BYTES`` environment variable or :func:`set_memory_limit` overrides it.
"""

from __future__ import annotations

import os

from ._args import positive_int

_memory_limit: int | None = None


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``), or the physical total as fallback."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 8 * 2**30


def set_memory_limit(nbytes: int | None) -> None:
    """Set the largest matrix (in bytes) the library will build; ``None`` restores the default.

    The default is half of the memory available when a matrix is asked for (or the
    ``TOEPLITZ_CONV_MAX_BYTES`` environment variable when set). A matrix whose estimated size
    exceeds the limit is refused with a ``ValueError`` before anything large is allocated.

    Parameters
    ----------
    nbytes : int or None
        The limit in bytes (positive), or None for the default.

    Examples
    --------
    >>> import numpy as np, toeplitz_conv as tc
    >>> tc.set_memory_limit(10_000)
    >>> try:
    ...     tc.conv_matrix(np.ones((8, 8, 3, 3)), (8, 32, 32), padding=1)
    ... except ValueError as e:
    ...     print(str(e).split(" about")[0], "more than the limit" in str(e))
    conv_matrix would need True
    >>> tc.set_memory_limit(None)   # back to the default
    """
    global _memory_limit
    if nbytes is not None:
        nbytes = positive_int("nbytes", nbytes)
    _memory_limit = nbytes


def memory_limit() -> tuple[int, str]:
    """The limit in force and where it comes from (for the message)."""
    if _memory_limit is not None:
        return _memory_limit, "set by toeplitz_conv.set_memory_limit"
    env = os.environ.get("TOEPLITZ_CONV_MAX_BYTES")
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not (1 <= value < 2**63):
            raise ValueError(
                f"TOEPLITZ_CONV_MAX_BYTES must be a finite number of bytes, at least 1; got {env!r}."
            )
        return int(value), "from TOEPLITZ_CONV_MAX_BYTES"
    return available_memory() // 2, "half of the available memory"


def human_bytes(nbytes: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            if unit == "PiB" and nbytes >= 1024:  # past any memory: a power of two says it
                return f"{nbytes:.3g} PiB (about 2**{50 + int(nbytes).bit_length() - 1} bytes)"
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes:.1f} PiB"  # pragma: no cover


def check_size(what: str, nbytes: int, detail: str) -> None:
    """Refuse to build ``what`` if its estimated ``nbytes`` exceed the memory limit."""
    limit, source = memory_limit()
    if nbytes > limit:
        raise ValueError(
            f"{what} would need about {human_bytes(nbytes)} ({detail}), more than the limit "
            f"of {human_bytes(limit)} ({source}). Use a smaller layer or raise the limit with "
            f"toeplitz_conv.set_memory_limit(nbytes)."
        )
