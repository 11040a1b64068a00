"""The arguments of the ``toeplitz-conv`` command, parsed and checked before any work.

Every rule here runs before the command builds a matrix or writes a file. A broken one raises
:class:`ArgumentError` (a ``ValueError``), one line that names the flag, the rule and what
arrived: ``argument --dpi: --dpi must be an integer from 10 to 1000; got '0'.`` The command
prints it as argparse does (``toeplitz-conv spy: error: ...``) and exits with status 2.

- parsers of single arguments (argparse ``type=``): sizes, counts, seeds, --dpi, --atol;
- the output paths: a folder takes the default file name, a name without a suffix the
  default suffix, and a path that cannot be written is refused before the work;
- the layer: its geometry, checked by the library and reported with the flags that gave it
  (what it would cost: :mod:`toeplitz_conv._cli_limits`).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, NoReturn, TypeVar


from .geometry import ALL_PADDING_MODES, ConvGeometry, conv_geometry, conv_transpose_geometry

#: The largest size, stride, padding, dilation or group count the command takes: a layer
#: with an axis this long is far past any memory, and int64 index arithmetic stays exact.
MAX_SIZE = 2**31 - 1
#: The resolutions --dpi takes (the pixels they give: :mod:`toeplitz_conv._cli_limits`).
DPI_RANGE = (10, 1000)

_T = TypeVar("_T")


class ArgumentError(ValueError):
    """A command-line argument breaks a rule; the text names the flag and what arrived."""


class UsageError(Exception):
    """What argparse found wrong, and the ``prog`` (``toeplitz-conv spy``) to say it as."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog, self.message = prog, message


class CommandParser(argparse.ArgumentParser):
    """argparse whose errors are raised (:class:`UsageError`), for the command to print as
    one line and return status 2 (rather than exit from inside ``parse_args``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


def _got(text: object) -> str:
    text = str(text)
    return repr(text if len(text) <= 200 else text[:197] + "...")


# --------------------------------------------------------------------------- single arguments


def parse_sizes(name: str, text: str, *, words: Collection[str] = (), minimum: int = 1,
                pairs: bool = False) -> tuple[int, ...] | tuple[tuple[int, int], ...] | str:
    """Command-line sizes: '3x8x8' -> (3, 8, 8), '2' -> (2,); ``words`` pass through ('same');
    with ``pairs``, per-side sizes 'LO:HIxLO:HI': '0:1x1:0' -> ((0, 1), (1, 0))."""
    if text in words:
        return text
    if pairs and ":" in str(text):
        axes = str(text).lower().replace("×", "x").split("x")
        if any(axis.count(":") != 1 for axis in axes):
            raise ValueError(f"{name} per side must be LO:HI for every spatial axis, e.g. 0:1x1:0; got {_got(text)}.")
        sides = [int(v) for axis in axes for v in axis.split(":") if parse_sizes(name, v, minimum=minimum)]
        return tuple((lo, hi) for lo, hi in zip(sides[::2], sides[1::2]))
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        extra = f" or {', '.join(map(repr, words))}" if words else ""
        raise ValueError(f"{name} must be sizes like 3x8x8 or 2{extra}; got {_got(text)}.") from None
    if any(s < minimum for s in sizes):
        rule = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must contain {rule} sizes; got {_got(text)}.")
    if any(s > MAX_SIZE for s in sizes):
        raise ValueError(f"{name} must contain sizes of at most {MAX_SIZE:,} (2**31 - 1); got {_got(text)}.")
    return sizes


def parse_count(name: str, text: str) -> int:
    """A command-line positive integer such as ``--groups 2``."""
    return parse_int(name, text, 1, MAX_SIZE, f"one integer from 1 to {MAX_SIZE:,}")


def parse_int(name: str, text: str, lo: int, hi: int | None, rule: str) -> int:
    """An integer from ``lo`` to ``hi`` (no upper bound: ``hi=None``); ``rule`` says so."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be {rule}; got {_got(text)}.")
    return value


def parse_dpi(name: str, text: str) -> int:
    lo, hi = DPI_RANGE
    return parse_int(name, text, lo, hi, f"an integer from {lo} to {hi}")


def parse_seed(name: str, text: str) -> int:
    return parse_int(name, text, 0, None, "a non-negative integer")


def parse_atol(name: str, text: str) -> float:
    """A finite tolerance ``>= 0`` (``1e-10``, ``0``); NaN, infinities and negatives refused."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, such as 1e-10; got {_got(text)}.")
    return value


def arg_type(parse: Callable[..., _T], name: str, **kw: Any) -> Callable[[str], _T]:
    """An argparse ``type=`` from one of the parsers above (its ValueError is the message)."""

    def convert(text: str) -> _T:
        try:
            return parse(name, text, **kw)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = name
    return convert


#: The padding names the command takes: torch's, and TensorFlow's / ONNX's.
PADDING_WORDS = ("same", "valid", "SAME", "SAME_UPPER", "SAME_LOWER", "VALID")


def layer_arguments(cmd: argparse.ArgumentParser, required: bool = True, transposed: bool = False) -> None:
    """The arguments that describe one layer (random weights): spy, explore, animate and
    verify --against (where --input and --kernel are required only with --against);
    ``transposed``: the command also takes --transposed, whose weight layout --kernel's help says."""
    cmd.add_argument("--input", required=required, metavar="CxHxW", type=arg_type(parse_sizes, "--input"),
                     help="shape of one input sample, e.g. 3x8x8 (1D: 3x16, 3D: 2x4x8x8)")
    also = ("; with --transposed torch's ConvTranspose layout (C_in, C_out/groups, *kernel), e.g. 3x4x3x3 "
            "for 3 input channels" if transposed else "")
    cmd.add_argument("--kernel", required=required, metavar="OUTxINxKHxKW", type=arg_type(parse_sizes, "--kernel"),
                     help=f"weight shape (C_out, C_in/groups, *kernel), e.g. 4x3x3x3{also}")
    cmd.add_argument("--stride", default=1, metavar="S", type=arg_type(parse_sizes, "--stride"),
                     help="stride, e.g. 2 or 2x1 (default 1)")
    cmd.add_argument("--padding", default=0, metavar="P",
                     type=arg_type(parse_sizes, "--padding", words=PADDING_WORDS, minimum=0, pairs=True),
                     help="padding, e.g. 1, 1x0, per side LO:HI for each axis (0:1x0:1), same or valid "
                          "(torch's), SAME, SAME_LOWER or VALID (TensorFlow's / ONNX's, any stride) (default 0)")
    cmd.add_argument("--dilation", default=1, metavar="D", type=arg_type(parse_sizes, "--dilation"),
                     help="dilation, e.g. 2 (default 1)")
    cmd.add_argument("--groups", default=1, metavar="G", type=arg_type(parse_count, "--groups"),
                     help="groups (default 1)")
    cmd.add_argument("--padding-mode", default="zeros", choices=ALL_PADDING_MODES,
                     help="as nn.Conv2d, or symmetric (numpy's, TensorFlow's MirrorPad SYMMETRIC: the edge "
                          "repeated) (default zeros)")
    cmd.add_argument("--seed", default=0, metavar="N", type=arg_type(parse_seed, "--seed"),
                     help="seed of the random weights, a non-negative integer (default 0)")


def output_argument(cmd: argparse.ArgumentParser, default: str, what: str) -> None:
    cmd.add_argument("-o", "--output", default=default, metavar="FILE",
                     help=f"{what}, or a folder to write {default} in (default {default})")


def dpi_argument(cmd: argparse.ArgumentParser, default: int, what: str) -> None:
    cmd.add_argument("--dpi", default=default, type=arg_type(parse_dpi, "--dpi"),
                     help=f"resolution of the {what}, {DPI_RANGE[0]} to {DPI_RANGE[1]} (default {default})")


# --------------------------------------------------------------------------- output paths


def image_suffixes() -> set[str]:
    """The file suffixes matplotlib writes images as ('.png', '.pdf', '.svg', ...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return {"." + ext for ext in FigureCanvasBase.get_supported_filetypes()}


def _check_writable(flag: str, path: Path, text: str) -> None:
    """``path`` (a file or a folder to create) can be written: the nearest existing folder
    above it is a folder we may write in, and ``path`` is not an unwritable file."""
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ArgumentError(f"argument {flag}: cannot write {str(path)!r}: permission denied; "
                                f"got {_got(text)}.")
        return
    above = path.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise ArgumentError(f"argument {flag}: cannot write {str(path)!r}: {str(above)!r} is a file, "
                            f"not a folder; got {_got(text)}.")
    if not os.access(above, os.W_OK | os.X_OK):
        raise ArgumentError(f"argument {flag}: cannot write {str(path)!r}: no permission to write in "
                            f"{str(above)!r}; got {_got(text)}.")


def output_file(flag: str, text: str, default: str, suffixes: Collection[str], what: str) -> Path:
    """The file ``-o`` names: a folder (existing, or written with a trailing '/') takes the
    ``default`` name, a name without a suffix the default's suffix; the suffix must be one of
    ``suffixes`` (``what`` the command writes, for the message)."""
    if not str(text).strip():
        raise ArgumentError(f"argument {flag}: {flag} must name a file or a folder; got {_got(text)}.")
    path = Path(text)
    if path.is_dir() or str(text).endswith(("/", os.sep)):
        path = path / default
    elif not path.suffix and not (path.exists() and not path.is_file()):  # /dev/stdout as is
        path = path.with_name(path.name + Path(default).suffix)
    if path.suffix.lower() not in suffixes and not (path.exists() and not path.is_file()):
        shown = ", ".join(sorted(suffixes))
        shown = f"one of {shown}" if len(suffixes) > 1 else shown
        raise ArgumentError(f"argument {flag}: {what} must end in {shown} (or name a folder); "
                            f"got {_got(text)}.")
    if path.is_dir():
        raise ArgumentError(f"argument {flag}: cannot write {str(path)!r}: it is a folder; got {_got(text)}.")
    _check_writable(flag, path, text)
    return path


def output_folder(flag: str, text: str) -> Path:
    """The folder ``--out`` names: an existing folder, or one that can be created."""
    path = Path(text)
    if not str(text).strip():
        raise ArgumentError(f"argument {flag}: {flag} must name a folder; got {_got(text)}.")
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"argument {flag}: {flag} must be a folder (created if missing); got "
                            f"{_got(text)}, an existing file.")
    if not path.exists() and path.suffix.lower() in image_suffixes() | {".html", ".htm", ".gif", ".txt"}:
        raise ArgumentError(f"argument {flag}: {flag} must be a folder (created if missing), the files are "
                            f"written in it; got {_got(text)}, a file name (its suffix {path.suffix!r}): "
                            f"e.g. {flag} {path.with_suffix('')}.")
    _check_writable(flag, path, text)
    return path


# --------------------------------------------------------------------------- the layer


def _x(sizes: object) -> str:
    if isinstance(sizes, tuple) and sizes and isinstance(sizes[0], tuple):  # per-side pairs
        return "x".join(f"{lo}:{hi}" for lo, hi in sizes)
    return "x".join(map(str, sizes)) if isinstance(sizes, tuple) else str(sizes)


def layer_flags(args: argparse.Namespace) -> str:
    """The layer as the user wrote it: --input and --kernel, and every option not at its default."""
    words = [f"--input {_x(args.input)}", f"--kernel {_x(args.kernel)}"]
    for flag, value, default in (("--stride", args.stride, 1), ("--padding", args.padding, 0),
                                 ("--dilation", args.dilation, 1), ("--groups", args.groups, 1),
                                 ("--padding-mode", args.padding_mode, "zeros"),
                                 ("--output-padding", getattr(args, "output_padding", 0), 0)):
        if value not in (default, (default,)):
            words.append(f"{flag} {_x(value)}")
    return " ".join(words)


def one_size(value: int | tuple[int, ...] | str) -> int | tuple[int, ...] | str:
    """``(2,)`` -> ``2`` (so a single size applies to every spatial axis), else unchanged."""
    return value[0] if isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], int) else value


def layer_options(args: argparse.Namespace, transposed: bool = False) -> dict[str, Any]:
    """The keyword arguments of the library's conv functions (when ``transposed``: no
    padding_mode, and the output_padding of the commands that take --output-padding)."""
    opts = dict(stride=one_size(args.stride), padding=one_size(args.padding), dilation=one_size(args.dilation),
                groups=args.groups, padding_mode=args.padding_mode)
    if transposed:
        del opts["padding_mode"]
        opts["output_padding"] = one_size(getattr(args, "output_padding", 0))
    return opts


def layer_geometry(args: argparse.Namespace, transposed: bool = False) -> ConvGeometry:
    """The geometry of the layer the arguments describe (of the convolution whose transpose it
    is, when ``transposed``), every rule checked; a broken one names the flags."""
    kernel, inp = args.kernel, args.input
    if len(kernel) != len(inp) + 1 or len(kernel) not in (3, 4, 5):
        raise ArgumentError(
            f"argument --kernel: --kernel must be C_outxC_in/groupsxKERNEL with one more size than "
            f"--input (C_inxSPATIAL), 1 to 3 spatial sizes; got --kernel {_x(kernel)} and --input "
            f"{_x(inp)}.")
    n = len(inp) - 1
    for flag, value in (("--stride", args.stride), ("--padding", args.padding), ("--dilation", args.dilation)):
        pairs = isinstance(value, tuple) and bool(value) and isinstance(value[0], tuple)
        if isinstance(value, tuple) and len(value) not in ((n,) if pairs else (1, n)):
            raise ArgumentError(
                f"argument {flag}: {flag} must be one size or {n} (one per spatial axis of --input "
                f"{_x(inp)}), or {n} LO:HI pairs; got {_x(value)!r}." if pairs else
                f"argument {flag}: {flag} must be one size or {n} (one per spatial axis of --input "
                f"{_x(inp)}); got {_x(value)!r}.")
    if transposed and args.padding in ("same", "valid"):
        raise ArgumentError(f"argument --padding: the transposed convolution takes sizes or TensorFlow's / "
                            f"ONNX's SAME, SAME_LOWER, VALID, not 'same' or 'valid' (torch's ConvTranspose "
                            f"has none); got {args.padding!r}.")
    if transposed and args.padding_mode != "zeros":
        raise ArgumentError(f"argument --padding-mode: the transposed convolution pads with zeros only "
                            f"(as torch's ConvTranspose); got {args.padding_mode!r}.")
    try:
        if transposed:
            return conv_transpose_geometry(kernel, inp, **layer_options(args, transposed=True))
        return conv_geometry(kernel, inp, **layer_options(args))
    except (ValueError, TypeError) as e:  # the library's rule, said for the flags that gave it
        raise ArgumentError(f"arguments {layer_flags(args)}: {' '.join(str(e).split())}") from None


def check_animated_channels(args: argparse.Namespace) -> None:
    """animate's layers: 1D or 2D, at most ``ANIMATE_MAX_CHANNELS`` input and output channels
    (a panel each: the figure's own limit)."""
    from .plot.animation import ANIMATE_MAX_CHANNELS  # without matplotlib

    if len(args.kernel) not in (3, 4):
        raise ArgumentError(
            f"argument --kernel: animate draws 1D or 2D layers: --kernel must be OUTxINxK or OUTxINxKHxKW; "
            f"got {_x(args.kernel)!r}.")
    out = args.kernel[1] * args.groups if args.transposed else args.kernel[0]
    if max(out, args.input[0]) > ANIMATE_MAX_CHANNELS:
        raise ArgumentError(
            f"arguments {layer_flags(args)}: animate draws a panel per channel, at most {ANIMATE_MAX_CHANNELS} "
            f"input and {ANIMATE_MAX_CHANNELS} output channels; got {args.input[0]} and {out}. Draw the "
            f"matrix with spy instead.")
