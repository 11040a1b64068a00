"""Generic argument normalisers shared by every area of the library.

Only what is not about one area lives here: arrays from numpy, torch or sequences, integers
and tuples of them, a choice among strings, a flag, a sample-or-batch array. The checks of one
area (a geometry, a pooling window, a network, a figure, the command line) and their messages
live with that area.

Messages follow one rule: name the argument, state the rule, show what arrived, e.g.
``stride must contain positive integers; got (2, 0).`` Nothing here uses ``assert`` (it
vanishes under ``python -O``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, SupportsInt

import numpy as np

if TYPE_CHECKING:
    from typing import TypeGuard

_DIMS = {1: "1D", 2: "2D", 3: "3D"}

# --------------------------------------------------------------------------- arrays


def is_torch_tensor(obj: object) -> TypeGuard[Any]:
    """True for a ``torch.Tensor``, without importing torch (so its type is ``Any`` here)."""
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def as_array(value: object, name: str) -> np.ndarray:
    """A numeric numpy array from a numpy array, torch tensor or nested sequence."""
    if is_torch_tensor(value):
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            raise TypeError(
                f"{name} must have a dtype scipy.sparse supports (float32, float64, "
                f"integer or complex); got {value.dtype}. Cast it with .float() or .double()."
            )
        if value.is_nested or str(value.layout) != "torch.strided" or value.device.type == "meta":
            raise TypeError(
                f"{name} must be a dense tensor with values (not sparse, nested or on the meta "
                f"device); got layout {value.layout}, device {value.device}."
            )
        if str(value.dtype).startswith("torch.float8"):
            raise TypeError(f"{name} must have a dtype scipy.sparse supports; got {value.dtype}. Cast it with .float().")
        value = value.detach().cpu().resolve_conj().resolve_neg().numpy()
    try:
        with warnings.catch_warnings():  # numpy < 1.24 only warns on a ragged sequence
            warnings.simplefilter("error", category=UserWarning)  # (VisibleDeprecationWarning)
            arr = np.asarray(value)
    except (ValueError, UserWarning):  # a ragged nested sequence
        raise ValueError(
            f"{name} must be a rectangular array (every row the same length); got a ragged "
            f"nested {type(value).__name__}."
        ) from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(
            f"{name} must be a numeric array (float32, float64, integer or complex); "
            f"got dtype {arr.dtype}."
        )
    if (arr.dtype.kind == "f" and arr.dtype.itemsize > 8) or (arr.dtype.kind == "c" and arr.dtype.itemsize > 16):
        raise TypeError(
            f"{name} must have a dtype scipy.sparse supports (float32, float64, integer or "
            f"complex); got {arr.dtype} (extended precision). Cast it with .astype(np.float64)."
        )
    if arr.dtype == np.float16:
        raise TypeError(
            f"{name} must have a dtype scipy.sparse supports (float32, float64, integer "
            f"or complex); got {arr.dtype}. Cast it with .astype(np.float32)."
        )
    return arr


def batched(arr: np.ndarray, name: str, channels: int, spatial: tuple[int, ...]) -> np.ndarray:
    """View ``arr`` as ``(N, channels, *spatial)``; one sample ``(channels, *spatial)`` is N=1."""
    sample = (channels, *spatial)
    if tuple(arr.shape) == sample:
        return arr.reshape(1, *sample)
    if arr.ndim == len(sample) + 1 and tuple(arr.shape[1:]) == sample:
        return arr
    raise ValueError(
        f"{name} must have shape (N, {', '.join(map(str, sample))}) or "
        f"({', '.join(map(str, sample))}) for this layer; got {name}.shape={tuple(arr.shape)}."
    )


def same_batch(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_name} and {b_name} must hold the same number of samples; got "
            f"{a_name}.shape={tuple(a.shape)} and {b_name}.shape={tuple(b.shape)}."
        )


# --------------------------------------------------------------------------- integers


def as_tuple(value: object, name: str, rule: str) -> tuple[Any, ...]:
    """``tuple(value)``, or ``TypeError: {name} must be {rule}; got {value!r}.`` when
    ``value`` is no sequence (the message is written only then)."""
    try:
        return tuple(value)  # type: ignore[arg-type]  # not iterable: the TypeError below
    except TypeError:
        raise TypeError(f"{name} must be {rule}; got {value!r}.") from None


def is_int(value: object) -> TypeGuard[int | np.integer[Any]]:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


#: The largest size, stride, padding or count taken anywhere: beyond it int64 index
#: arithmetic could overflow (torch's own limit is int64).
MAX_INT = 2**62


def check_int_range(name: str, *values: SupportsInt) -> None:
    """Refuse an integer beyond :data:`MAX_INT` in size, naming it (no OverflowError later)."""
    for value in values:
        if abs(int(value)) > MAX_INT:
            digits = len(str(abs(int(value))))
            got = repr(value) if digits <= 30 else f"an integer of {digits} digits"
            raise ValueError(f"{name} must be at most 2**62 in size; got {got}.")


def int_tuple(name: str, value: object, n: int, *, minimum: int) -> tuple[int, ...]:
    """Normalise an int or a length-``n`` sequence of ints, each ``>= minimum``; a sequence
    of one int is broadcast to every dimension, as torch does."""
    rule = "positive integers" if minimum == 1 else "non-negative integers"
    items = (value,) * n if is_int(value) else as_tuple(value, name, f"an int or a tuple of {n} ints ({rule})")
    if len(items) == 1 and n > 1:
        items = items * n
    if len(items) != n:
        raise ValueError(
            f"{name} must be an int or a tuple of {n} ints, one per spatial dimension "
            f"({_DIMS.get(n, f'{n}D')}); got {value!r}."
        )
    if not all(is_int(v) for v in items):
        raise TypeError(f"{name} must contain {rule}; got {value!r}.")
    if any(v < minimum for v in items):
        raise ValueError(f"{name} must contain {rule}; got {value!r}.")
    check_int_range(name, *items)
    return tuple(int(v) for v in items)


def real_number(name: str, value: object, rule: str, valid: Callable[[Any], bool]) -> float:
    """A real number (not a bool) for which ``valid(value)`` holds; ``rule`` says which, as
    ``{name} must be {rule}``: a ``TypeError`` for another type, a ``ValueError`` outside."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be {rule}; got {value!r}.")
    if not valid(value):
        raise ValueError(f"{name} must be {rule}; got {name}={value!r}.")
    return float(value)


def positive_int(name: str, value: object) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    check_int_range(name, value)
    return int(value)


def shape_tuple(name: str, value: object, n: int, what: str) -> tuple[int, ...]:
    """A shape of ``n`` positive ints; ``what`` describes the entries for the message."""
    items = as_tuple(value, name, f"a tuple {what}")
    if len(items) != n or not all(is_int(v) for v in items):
        hint = ""
        if len(items) == n + 1:
            hint = " (drop the batch dimension: it is the shape of one sample)"
        raise ValueError(
            f"{name} must be a tuple of {n} ints {what}; got {name}={items!r}{hint}."
        )
    if any(v < 1 for v in items):
        raise ValueError(f"{name} must contain positive sizes; got {name}={items!r}.")
    check_int_range(name, *items)
    return tuple(int(v) for v in items)


# --------------------------------------------------------------------------- options


def check_choice(name: str, value: object, choices: Collection[str], note: str | None = None) -> str:
    """``value`` must be one of the strings ``choices``; ``note`` says what they are."""
    if not isinstance(value, str) or value not in choices:
        what = f" ({note})" if note else ""
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}{what}; got {value!r}."
        )
    return value


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}.")
    return bool(value)
