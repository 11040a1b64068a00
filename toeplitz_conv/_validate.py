"""Every argument check and every error message of the library, in one place.

Messages follow one rule: name the argument, state the rule, show what arrived, e.g.
``input_shape[0] must equal weight.shape[1] * groups (3); got input_shape=(1, 28, 28).``
Nothing here uses ``assert`` (it vanishes under ``python -O``).
"""

from __future__ import annotations

import os

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
FORMATS = ("csr", "csc", "coo", "bsr", "dia", "dok", "lil")
_DIMS = {1: "1D", 2: "2D", 3: "3D"}


# --------------------------------------------------------------------------- arrays


def is_torch_tensor(obj) -> bool:
    """True for a ``torch.Tensor``, without importing torch."""
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def as_array(value, name: str) -> np.ndarray:
    """A numeric numpy array from a numpy array, torch tensor or nested sequence."""
    if is_torch_tensor(value):
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            raise TypeError(
                f"{name} must have a dtype scipy.sparse supports (float32, float64, "
                f"integer or complex); got {value.dtype}. Cast it with .float() or .double()."
            )
        value = value.detach().cpu().resolve_conj().resolve_neg().numpy()
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(
            f"{name} must be a numeric array (float32, float64, integer or complex); "
            f"got dtype {arr.dtype}."
        )
    if arr.dtype == np.float16:
        raise TypeError(
            f"{name} must have a dtype scipy.sparse supports (float32, float64, integer "
            f"or complex); got {arr.dtype}. Cast it with .astype(np.float32)."
        )
    return arr


def check_weight(weight, name: str = "weight") -> np.ndarray:
    w = as_array(weight, name)
    if w.ndim not in (3, 4, 5):
        raise ValueError(
            f"{name} must have 3, 4 or 5 dimensions, (C_out, C_in/groups, *kernel) for a "
            f"1D, 2D or 3D convolution; got {name}.ndim={w.ndim} (shape {tuple(w.shape)})."
        )
    if w.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {tuple(w.shape)}.")
    return w


def matching_weight(weight, shape: tuple[int, ...], name: str = "weight") -> np.ndarray:
    """A numeric array of exactly ``shape`` (the geometry's weight shape)."""
    w = as_array(weight, name)
    if tuple(w.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have this layer's weight shape {tuple(shape)}; got "
            f"{name}.shape={tuple(w.shape)}."
        )
    return w


def check_out_array(out, size: int) -> None:
    """``out`` of ``ConvPattern.values``: written in place, so it must be a contiguous array."""
    if not isinstance(out, np.ndarray) or not out.flags.c_contiguous or out.size != size:
        got = (f"shape {out.shape}, C-contiguous={out.flags.c_contiguous}"
               if isinstance(out, np.ndarray) else type(out).__name__)
        raise ValueError(
            f"out must be a C-contiguous numpy array of {size:,} entries (C.data of this "
            f"layer's matrix); got {got}."
        )


# --------------------------------------------------------------------------- integers


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def int_tuple(name: str, value, n: int, *, minimum: int) -> tuple[int, ...]:
    """Normalise an int or a length-``n`` sequence of ints, each ``>= minimum``."""
    rule = "positive integers" if minimum == 1 else "non-negative integers"
    items = (value,) * n if _is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(
            f"{name} must be an int or a tuple of {n} ints ({rule}); got {value!r}."
        ) from None
    if len(items) != n:
        raise ValueError(
            f"{name} must be an int or a tuple of {n} ints, one per spatial dimension of a "
            f"{_DIMS.get(n, f'{n}D')} convolution; got {value!r}."
        )
    if not all(_is_int(v) for v in items):
        raise TypeError(f"{name} must contain {rule}; got {value!r}.")
    if any(v < minimum for v in items):
        raise ValueError(f"{name} must contain {rule}; got {value!r}.")
    return tuple(int(v) for v in items)


def positive_int(name: str, value) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def shape_tuple(name: str, value, n: int, what: str) -> tuple[int, ...]:
    """A shape of ``n`` positive ints; ``what`` describes the entries for the message."""
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a tuple {what}; got {value!r}.") from None
    if len(items) != n or not all(_is_int(v) for v in items):
        hint = ""
        if len(items) == n + 1:
            hint = " (drop the batch dimension: it is the shape of one sample)"
        raise ValueError(
            f"{name} must be a tuple of {n} ints {what}; got {name}={tuple(value)!r}{hint}."
        )
    if any(v < 1 for v in items):
        raise ValueError(f"{name} must contain positive sizes; got {name}={items!r}.")
    return tuple(int(v) for v in items)


# --------------------------------------------------------------------------- options


def check_choice(name: str, value, choices, note: str | None = None) -> str:
    """``value`` must be one of the strings ``choices``; ``note`` says what they are."""
    if not isinstance(value, str) or value not in choices:
        what = f" ({note})" if note else ""
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))}{what}; got {value!r}."
        )
    return value


def check_padding_mode(padding_mode) -> str:
    return check_choice("padding_mode", padding_mode, PADDING_MODES)


def check_format(format) -> str:
    return check_choice("format", format, FORMATS, "scipy.sparse formats")


def check_groups(groups, in_channels: int, out_channels: int, weight_shape,
                 label: tuple = ("input_shape[0]", "input_shape", None)) -> int:
    """``label``: how the message names the channel count and the shape the user passed."""
    groups = positive_int("groups", groups)
    if out_channels % groups:
        raise ValueError(
            f"groups must divide the output channels weight.shape[0]={out_channels}; "
            f"got groups={groups} (weight shape {tuple(weight_shape)})."
        )
    if in_channels != weight_shape[1] * groups:
        raise ValueError(
            f"{label[0]} must equal weight.shape[1] * groups "
            f"({weight_shape[1]} * {groups} = {weight_shape[1] * groups}); "
            f"got {label[0]}={in_channels}."
        )
    return groups


# --------------------------------------------------------------------------- sample/batch


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


def sample_shape(x, weight_shape, name: str = "x"):
    """One sample's shape of ``x`` (a sample or a batch) and the labels for its messages.

    Returns ``(shape, label)``; ``label = (channel expression, shape expression, x.shape)``
    lets the geometry checks name ``x`` rather than an ``input_shape`` the user never passed.
    """
    shape = tuple(getattr(x, "shape", np.shape(x)))
    n = len(weight_shape) - 1  # channels + spatial axes
    if len(shape) == n:
        return shape, (f"{name}.shape[0]", f"{name}.shape", shape)
    if len(shape) == n + 1:
        return shape[1:], (f"{name}.shape[1]", f"{name}.shape", shape)
    raise ValueError(
        f"{name} must have shape (N, C_in, *spatial) or (C_in, *spatial) with {n - 1} spatial axes "
        f"for weight shape {tuple(weight_shape)}; got {name}.shape={shape}."
    )


def one_sample(arr: np.ndarray, name: str) -> None:
    if arr.shape[0] != 1:
        raise ValueError(
            f"{name} must be one sample (C_in, *spatial) for the Jacobian; got "
            f"{name}.shape={tuple(arr.shape)}."
        )


def same_batch(a: np.ndarray, b: np.ndarray, a_name: str, b_name: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{a_name} and {b_name} must hold the same number of samples; got "
            f"{a_name}.shape={tuple(a.shape)} and {b_name}.shape={tuple(b.shape)}."
        )


def size_tuple(name: str, value) -> tuple[tuple[int, ...], bool]:
    """A spatial size: an int (returns scalar=True) or a tuple of positive ints."""
    if _is_int(value):
        return int_tuple(name, value, 1, minimum=1), True
    try:
        n = len(tuple(value))
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of ints; got {value!r}.") from None
    if n not in (1, 2, 3):
        raise ValueError(f"{name} must have 1, 2 or 3 spatial sizes; got {value!r}.")
    return int_tuple(name, value, n, minimum=1), False


from .memory import check_size, human_bytes as _human  # noqa: E402 (transitional)


# --------------------------------------------------------------------------- geometry


def _lohi(lo, hi) -> str:
    return str(lo) if lo == hi else f"(low {lo}, high {hi})"


def check_padding_fits(mode: str, lo, hi, in_spatial) -> None:
    """torch's limits on padding for the non-zero padding modes."""
    sizes = tuple(in_spatial) * 2
    if mode == "reflect" and any(p >= n for p, n in zip(lo + hi, sizes)):
        raise ValueError(
            f"padding must be smaller than the input size in every dimension for "
            f"padding_mode='reflect' (as in torch); got padding {_lohi(lo, hi)} for input "
            f"size {tuple(in_spatial)}."
        )
    if mode == "circular" and any(p > n for p, n in zip(lo + hi, sizes)):
        raise ValueError(
            f"padding must not exceed the input size in any dimension for "
            f"padding_mode='circular' (it would wrap around more than once, which torch "
            f"refuses); got padding {_lohi(lo, hi)} for input size {tuple(in_spatial)}."
        )


def check_output_nonempty(out, in_shape, kernel, dilation, lo, hi,
                          label: tuple = ("input_shape[0]", "input_shape", None)) -> None:
    if all(o >= 1 for o in out):
        return
    eff = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    padded = tuple(i + a + b for i, a, b in zip(in_shape[1:], lo, hi))
    shown = tuple(in_shape) if label[2] is None else tuple(label[2])
    raise ValueError(
        f"the output would be empty: the padded input {padded} is smaller than the dilated "
        f"kernel {eff} (kernel {tuple(kernel)}, dilation {tuple(dilation)}); got "
        f"{label[1]}={shown}, padding {_lohi(lo, hi)}."
    )


def check_output_padding(output_padding, stride, dilation) -> None:
    if any(a >= s and a >= d for a, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(
            f"output_padding must be smaller than either stride or dilation in every "
            f"dimension (as in torch); got output_padding={output_padding}, stride={stride}, "
            f"dilation={dilation}."
        )


def check_transpose_groups(groups, weight_shape, in_channels: int,
                           label: tuple = ("input_shape[0]", "input_shape", None)) -> int:
    groups = positive_int("groups", groups)
    if in_channels != weight_shape[0]:
        raise ValueError(
            f"{label[0]} must equal weight.shape[0] ({weight_shape[0]}) for a transposed "
            f"convolution (weight layout (C_in, C_out/groups, *kernel)); got "
            f"{label[0]}={in_channels}."
        )
    if weight_shape[0] % groups:
        raise ValueError(
            f"groups must divide the input channels weight.shape[0]={weight_shape[0]} of a "
            f"transposed convolution; got groups={groups}."
        )
    return groups


def check_transpose_output_nonempty(out, in_shape, kernel, stride, padding, dilation, output_padding) -> None:
    if all(o >= 1 for o in out):
        return
    raise ValueError(
        f"the output of the transposed convolution would be empty: (i - 1) * stride - "
        f"2 * padding + dilation * (kernel - 1) + output_padding + 1 = {tuple(out)}; got "
        f"input_shape={tuple(in_shape)}, kernel {tuple(kernel)}, stride={stride}, "
        f"padding={padding}, dilation={dilation}, output_padding={output_padding}."
    )


def check_weight_shape(weight_shape, layout: str) -> tuple[int, ...]:
    """A weight shape of 3, 4 or 5 positive ints; ``layout`` names its axes for the message."""
    try:
        wshape = tuple(weight_shape)
    except TypeError:
        raise TypeError(f"weight shape must be a tuple of ints {layout}; got {weight_shape!r}.") from None
    if len(wshape) not in (3, 4, 5):
        raise ValueError(
            f"weight must have 3, 4 or 5 dimensions, {layout} for a 1D, 2D or 3D "
            f"convolution; got weight shape {wshape}."
        )
    if not all(_is_int(s) for s in wshape) or any(s < 1 for s in wshape):
        raise ValueError(f"weight shape must contain positive ints {layout}; got {wshape}.")
    return tuple(int(s) for s in wshape)


# ---- pooling and networks (issue 3)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def pool_input_shape(value, name: str) -> tuple[int, ...]:
    """The shape of one sample ``(C, *spatial)`` with 1, 2 or 3 spatial axes."""
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a tuple (C, *spatial) of one sample with 1, 2 or 3 spatial axes; "
            f"got {value!r}."
        ) from None
    if len(items) not in (2, 3, 4) or not all(_is_int(s) for s in items):
        raise ValueError(
            f"{name} must be a tuple of 2, 3 or 4 ints (C, *spatial) of one sample for 1D, 2D "
            f"or 3D pooling; got {name}={items!r}."
        )
    if any(s < 1 for s in items):
        raise ValueError(f"{name} must contain positive sizes; got {name}={items!r}.")
    return tuple(int(s) for s in items)


def pool_sample(x: np.ndarray, name: str) -> None:
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"{name} must be one sample (C, *spatial) with 1, 2 or 3 spatial axes (no batch "
            f"axis); got {name}.shape={tuple(x.shape)}."
        )


def pool_stride(stride, kernel: tuple[int, ...], n: int) -> tuple[int, ...]:
    """torch's default: ``stride=None`` (or an empty tuple) means ``stride=kernel_size``."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    return int_tuple("stride", stride, n, minimum=1)


def check_pool_padding(padding, kernel) -> None:
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(
            f"padding must be at most half of kernel_size in every dimension (as in torch); "
            f"got padding={padding} for kernel_size={kernel}."
        )


def check_pool_output(what: str, out, in_shape, kernel, stride, padding, dilation) -> None:
    if all(o >= 1 for o in out):
        return
    raise ValueError(
        f"{what}: the output would be empty, the kernel (kernel_size={kernel}, "
        f"dilation={dilation}) is larger than the padded input; got input_shape="
        f"{tuple(in_shape)}, padding={padding}, stride={stride} (output size {tuple(out)})."
    )


def adaptive_output_size(output_size, in_spatial) -> tuple[int, ...]:
    n = len(in_spatial)
    items = (output_size,) * n if (_is_int(output_size) or output_size is None) else output_size
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(
            f"output_size must be an int or a tuple of {n} ints (or None to keep an axis); "
            f"got {output_size!r}."
        ) from None
    if len(items) != n or not all(o is None or _is_int(o) for o in items):
        raise ValueError(
            f"output_size must be an int or a tuple of {n} ints (or None to keep an axis), one "
            f"per spatial axis of the input; got output_size={output_size!r}."
        )
    out = tuple(i if o is None else int(o) for o, i in zip(items, in_spatial))
    if any(o < 1 for o in out):
        raise ValueError(f"output_size must contain positive sizes; got output_size={output_size!r}.")
    return out


def unsupported_module(name: str, module, supported) -> None:
    raise TypeError(
        f"compile does not support module {name!r} of type {type(module).__name__}; supported: "
        f"{', '.join(supported)}."
    )


def module_in_training(name: str, module, why: str) -> None:
    raise ValueError(
        f"module {name!r} ({type(module).__name__}) must be in eval mode to be compiled: {why}. "
        f"Call model.eval() first."
    )


def network_input(x: np.ndarray, input_shape) -> np.ndarray:
    shape = tuple(input_shape)
    if x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape:
        return x
    hint = " (add a batch axis: x[None])" if tuple(x.shape) == shape else ""
    raise ValueError(
        f"x must be a batch of shape (N, {', '.join(map(str, shape))}) for this network "
        f"(compiled for input_shape={shape}); got x.shape={tuple(x.shape)}{hint}."
    )


def backward_before_forward() -> None:
    raise ValueError("backward needs the activations of a forward pass; call forward(x) first.")


def grad_output_shape(got, expected) -> None:
    raise ValueError(
        f"grad_output must have the shape of the last forward's output {tuple(expected)}; "
        f"got grad_output.shape={tuple(got)}."
    )

def max_pool_window_in_padding(in_shape, kernel, padding, dilation) -> None:
    raise ValueError(
        f"max pooling has a window that reads only padding (its dilated taps skip the whole "
        f"input), where torch outputs -inf and an index outside the input; got input_shape="
        f"{tuple(in_shape)}, kernel_size={kernel}, padding={padding}, dilation={dilation}. "
        f"Use less padding or dilation."
    )


def check_avg_pool3d_input(in_spatial, kernel) -> None:
    """torch's avg_pool3d (only it) refuses an unpadded input smaller than the kernel."""
    if len(kernel) == 3 and any(i < k for i, k in zip(in_spatial, kernel)):
        raise ValueError(
            f"input_shape's spatial size must be at least kernel_size in every dimension for 3D "
            f"average pooling (as in torch's avg_pool3d, even with padding); got spatial size "
            f"{tuple(in_spatial)} for kernel_size={tuple(kernel)}."
        )


# ---- figures and command line (issue 5)


def check_matrix(C, name: str = "C"):
    """A 2D scipy.sparse array from a sparse matrix/array or a 2D array_like."""
    import scipy.sparse as sp

    if sp.issparse(C):
        if C.ndim != 2:
            raise ValueError(f"{name} must be a 2D matrix; got {C.ndim} dimensions.")
        return sp.csr_array(C)
    arr = as_array(C, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2D matrix (scipy.sparse or array_like); got {name}.shape={tuple(arr.shape)}."
        )
    return sp.csr_array(arr)


def check_index_shape(name: str, shape, size: int, what: str):
    """``None``, or the shape of what the ``size`` rows/columns index, checked against it."""
    if shape is None:
        return None
    try:
        items = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple (channels, *spatial); got {shape!r}.") from None
    if not items or not all(_is_int(s) and s >= 1 for s in items):
        raise ValueError(f"{name} must be a tuple of positive ints (channels, *spatial); got {shape!r}.")
    if int(np.prod(items)) != size:
        raise ValueError(
            f"{name} must describe the {size} {what} of the matrix (its product must be {size}); "
            f"got {name}={items} (product {int(np.prod(items))})."
        )
    return tuple(int(s) for s in items)


def check_flat_index(name: str, index, shape) -> int:
    """A flat C-order index from an int or a (channel, *position) tuple inside ``shape``."""
    size = int(np.prod(shape))
    if _is_int(index):
        if not 0 <= index < size:
            raise ValueError(f"{name} must be in [0, {size}) for shape {tuple(shape)}; got {index}.")
        return int(index)
    try:
        items = tuple(index)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple (channel, *position); got {index!r}.") from None
    if len(items) != len(shape) or not all(_is_int(i) and 0 <= i < s for i, s in zip(items, shape)):
        raise ValueError(
            f"{name} must be a flat index or a tuple of {len(shape)} indices inside shape "
            f"{tuple(shape)}; got {index!r}."
        )
    return int(np.ravel_multi_index(items, shape))


def check_channel(name: str, value, count: int) -> int:
    if not _is_int(value) or not 0 <= value < count:
        raise ValueError(f"{name} must be an int in [0, {count}); got {value!r}.")
    return int(value)


def check_gradient_figure_shapes(x: np.ndarray, weight: np.ndarray, ndim: int) -> None:
    """gradient_figure draws 1D or 2D layers: ``x`` has ``ndim`` axes, the weight ``ndim + 1``."""
    if weight.ndim != ndim + 1 or x.ndim != ndim:
        raise ValueError(
            "gradient_figure draws a 2D layer (x (C_in, H, W) or (H, W), weight "
            "(C_out, C_in/groups, kH, kW) or (kH, kW)) or a 1D one (x (C_in, L), weight "
            f"(C_out, C_in/groups, k)); got x.shape={tuple(x.shape)}, weight.shape={tuple(weight.shape)}."
        )


SYMBOLIC_MAX_ENTRIES = 65536


def check_symbolic_size(rows: int, cols: int) -> None:
    if rows * cols > SYMBOLIC_MAX_ENTRIES:
        raise ValueError(
            f"the symbolic matrix is for small layers (at most {SYMBOLIC_MAX_ENTRIES:,} entries); "
            f"got {rows:,} x {cols:,}. Use conv_matrix for the numbers and spy to see them."
        )


def parse_sizes(name: str, text: str, *, words=(), minimum: int = 1):
    """Command-line sizes: '3x8x8' -> (3, 8, 8), '2' -> (2,); ``words`` pass through ('same')."""
    if text in words:
        return text
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        extra = f" or {', '.join(map(repr, words))}" if words else ""
        raise ValueError(f"{name} must be sizes like 3x8x8 or 2{extra}; got {text!r}.") from None
    if any(s < minimum for s in sizes):
        rule = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must contain {rule} sizes; got {text!r}.")
    return sizes


def parse_count(name: str, text: str) -> int:
    """A command-line positive integer such as ``--groups 2``."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be one positive integer; got {text!r}.") from None
    if value < 1:
        raise ValueError(f"{name} must be one positive integer; got {text!r}.")
    return value


# ---- spectra (issue 6)


def check_k(k, limit: int) -> int:
    """``k`` singular values of a matrix with ``limit = min(C.shape)`` of them."""
    if not _is_int(k):
        raise TypeError(f"k must be a positive integer or None (all values); got {k!r}.")
    if not 1 <= k <= limit:
        raise ValueError(
            f"k must be between 1 and min(C.shape) = {limit} (the number of singular values "
            f"of this layer's matrix); got k={k}."
        )
    return int(k)


def check_tol(tol) -> float:
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (int, float, np.floating, np.integer)):
        raise TypeError(f"tol must be a float in [0, 1) (0: machine precision); got {tol!r}.")
    if not 0 <= tol < 1:
        raise ValueError(f"tol must be a float in [0, 1) (0: machine precision); got tol={tol!r}.")
    return float(tol)


def fft_not_applicable(reason: str) -> None:
    raise ValueError(
        f"method='fft' needs a circulant layer: padding_mode='circular', stride 1 and an output "
        f"as large as the input; got {reason}. Use method='auto', 'dense' or 'svds'."
    )


def svds_needs_k(limit: int) -> None:
    raise ValueError(
        f"method='svds' computes the top k singular values only: pass k (1 <= k < {limit}); "
        f"got k=None. For all of them use method='dense' (or 'fft' when it applies)."
    )


def svds_k_too_large(k: int, shape) -> None:
    raise ValueError(
        f"k must be smaller than min(C.shape) = {min(shape)} for method='svds' (ARPACK's "
        f"limit; the matrix is {shape[0]} x {shape[1]}); got k={k}. Use method='dense'."
    )
