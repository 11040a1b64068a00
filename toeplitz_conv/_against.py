"""``toeplitz-conv verify --against MODULE:CALLABLE``: its arguments, and the user's own
convolution checked against the exact matrix of the layer the flags describe
(:func:`toeplitz_conv.testing.assert_conv_equal`), with the mismatch report and its diagnosis
on failure. What the user's code raises (even ``sys.exit``) is its failure: exit status 1 with
its own traceback, never a pass and never a bad argument."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np

from ._cli_args import ArgumentError, arg_type, layer_arguments, layer_options, one_size, parse_sizes
from .geometry import ConvGeometry
from .layouts import kernel_from_torch, output_shape_in

if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec


def against_arguments(cmd: argparse.ArgumentParser) -> None:
    """verify --against: the user's callable and the layer it should be."""
    cmd.add_argument("--against", metavar="MODULE:CALLABLE",
                     help="check your own convolution instead: CALLABLE(x, weight, stride=, padding=, "
                          "dilation=, groups=) as torch.nn.functional.conv2d (MODULE a module name or a "
                          ".py file), on the layer of --input/--kernel/...; exit 1 with a diagnosis on mismatch")
    layer_arguments(cmd, required=False, transposed=True)
    cmd.add_argument("--transposed", action="store_true",
                     help="with --against: CALLABLE is a transposed convolution (conv_transpose2d)")
    cmd.add_argument("--output-padding", default=0, metavar="A",
                     type=arg_type(parse_sizes, "--output-padding", minimum=0),
                     help="with --against --transposed: output_padding (default 0)")
    cmd.add_argument("--layout", default=None, metavar="LAYOUT",
                     help="with --against: CALLABLE's batches channels last, e.g. NHWC (NLC, NDHWC); "
                          "--input stays CxHxW")
    cmd.add_argument("--kernel-layout", default=None, metavar="AXES",
                     help="with --against: the weight CALLABLE gets, e.g. HWIO (TensorFlow, JAX) or HWOI "
                          "(conv2d_transpose); --kernel stays torch's")


def load_callable(spec: str) -> Callable[..., object]:
    """``MODULE:CALLABLE`` (a module name or a ``.py`` file, then a dotted attribute) -> the
    callable; an ``ArgumentError`` naming --against when any part is missing."""
    import importlib
    import importlib.util
    from pathlib import Path

    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ArgumentError(f"argument --against: --against must be MODULE:CALLABLE (e.g. "
                            f"torch.nn.functional:conv2d or myconv.py:conv); got {spec!r}.")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise FileNotFoundError(f"no file {module_name!r}")
            # a .py file's spec (and its loader) is never None
            loader = cast("ModuleSpec", importlib.util.spec_from_file_location(path.stem, path))
            module = importlib.util.module_from_spec(loader)
            cast("Loader", loader.loader).exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any failure to import is the user's module's
        raise ArgumentError(f"argument --against: cannot import {module_name!r}: {type(e).__name__}: {e}") from None
    obj: object = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ArgumentError(f"argument --against: {module_name!r} has no attribute {attr!r}.")
    if not callable(obj):
        raise ArgumentError(f"argument --against: {spec!r} is not callable; got a {type(obj).__name__}.")
    return obj


def check_against(user_fn: Callable[..., object], args: argparse.Namespace, geom: ConvGeometry) -> int:
    """Check ``user_fn(x, weight, **geometry)`` against the layer's exact matrix: 0 when it
    is that convolution, 1 with the mismatch report and its diagnosis otherwise, or with its
    traceback when it raises (or exits). Without ``--atol`` the tolerance follows the dtype
    it returns (:func:`toeplitz_conv.testing.default_tolerance`)."""
    from .testing import assert_conv_equal

    w = np.random.default_rng(args.seed).standard_normal(args.kernel)
    layout, kernel_layout = getattr(args, "layout", None), getattr(args, "kernel_layout", None)
    try:
        shape = output_shape_in(tuple(args.input), layout)
        w = kernel_from_torch(w, kernel_layout, args.transposed)  # the weight as CALLABLE reads it
    except ValueError as e:
        raise ArgumentError(f"argument --layout/--kernel-layout: {e}") from None
    opts = layer_options(args, args.transposed)
    padding_mode = opts.pop("padding_mode", "zeros")  # the reference's: fn takes torch's functional arguments
    raised: list[tuple[BaseException, str, str]] = []  # what user_fn raised, on what, its own frames
    first: list[object] = []  # its first output: the dtype it returns

    def fn(x: object) -> object:
        weight: object = w
        if type(x).__module__.startswith("torch"):
            import torch

            weight = torch.from_numpy(w)
        try:
            y = user_fn(x, weight, **opts)
        except BaseException as e:  # even SystemExit: reported by check_against
            tb = e.__traceback__.tb_next if e.__traceback__ else None  # from user_fn's frame on
            x_is = f"{type(x).__module__.split('.')[0]}.{type(x).__name__} of shape {tuple(getattr(x, 'shape', ()))}"
            raised.append((e, x_is, "".join(traceback.format_exception(type(e), e, tb))))
            raise
        first[:] = first or [y]
        return y

    what = f"{_describe(geom, args)} on {'x'.join(map(str, args.input))}"
    rtol, atol = (None, None) if args.atol is None else (0.0, args.atol)
    try:
        assert_conv_equal(fn, w, shape, transposed=args.transposed, padding_mode=padding_mode, atol=atol,
                          rtol=rtol, layout=layout, kernel_layout=kernel_layout, **opts)
    except BaseException as e:  # noqa: BLE001 - the user's code may raise anything
        if raised and e is raised[-1][0]:
            return _user_failed(args.against, *raised[-1])
        if not isinstance(e, AssertionError):
            raise
        print(f"{args.against} is NOT the {what}:\n{e}\n({_tolerance(first, rtol, atol)})")
        return 1
    print(f"{args.against} is the {what}: every entry of its matrix equals the exact one "
          f"({_tolerance(first, rtol, atol)}).")
    return 0


def _tolerance(first: list[object], rtol: float | None, atol: float | None) -> str:
    """The tolerance used, and why: given, or the default for the dtype ``fn`` returned."""
    from .probe import to_numpy
    from .testing import default_tolerance

    if rtol is not None:
        return f"rtol {rtol:g}, atol {atol:g} from --atol"
    dtype = to_numpy(first[0], "--against").dtype if first else np.dtype(np.float64)
    tol = default_tolerance(np.float64, dtype)
    return f"rtol {tol:g}, atol {tol:g}: the default for {dtype} output; --atol sets another"


def _user_failed(spec: str, e: BaseException, x_is: str, tb: str) -> int:
    """Exit status 1, with what the user's callable did and its traceback on stderr."""
    if isinstance(e, SystemExit):
        did = f"called sys.exit({e.code!r})"
    else:
        did = f"raised {type(e).__name__}" + (f": {e}" if str(e) else "")
    print(f"{spec} {did} when called with x a {x_is}: nothing was verified.\n{tb}", end="", file=sys.stderr)
    return 1


def _describe(geom: ConvGeometry, args: argparse.Namespace) -> str:
    """The layer as torch's constructor call; a transposed one as ``ConvTransposeNd`` (its
    geometry is the adjoint convolution's: channels swapped)."""
    text = geom.describe()
    if not args.transposed:
        return text
    head, _, rest = text.partition("(")
    a, b, rest = rest.split(", ", 2)
    extra = "" if not any(_sizes(args.output_padding)) else f", output_padding={one_size(args.output_padding)}"
    return f"{head.replace('Conv', 'ConvTranspose')}({b}, {a}, {rest[:-1]}{extra})"


def _sizes(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value,)

