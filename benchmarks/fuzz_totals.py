"""Fuzz totals: how many random inputs to the public API get the right answer, a clear
refusal, a wrong answer, a hang or a crash.

Run from the repository root::

    python benchmarks/fuzz_totals.py                        # 3 families x 300 cases (a few minutes)
    python benchmarks/fuzz_totals.py --cases 3              # smoke run
    python benchmarks/fuzz_totals.py --case geometries:17   # one case again, in this process, with
                                                            # its parameters and any traceback

Every case is drawn from ``--seed`` and its own index (the same case for the same seed, on any
machine) and runs in a forked child with a memory cap (its address space at the fork plus
``--cap-gib``, ``RLIMIT_AS``) and a wall-clock limit (``--timeout``). Three families:

1. *programs*: a random small program of ops (convolutions, activations, residual sums,
   concatenations, slices, in-place ops on views, ``+=`` through another name, the batch
   size written into a shape, ``no_grad`` blocks, ``x - x``, pooling, products), run by one
   interpreter ``nn.Module`` in float64, compiled by ``tc.compile``. Checked against PyTorch
   at batch sizes 1, 2 and 3: the forward, the input gradient and the parameter gradients
   (``Network.backward``) against autograd; at one sample ``Network.jacobian`` against
   ``torch.autograd.functional.jacobian``, ``local_lipschitz`` against the 2-norm of that
   Jacobian, and ``lipschitz_bound() >= local_lipschitz(x)``.
2. *geometries*: a random 1D/2D/3D convolution (groups, stride, dilation, padding as an int,
   a tuple, ``'same'`` or ``'valid'``, every padding mode, or transposed with
   ``output_padding``) by ``tc.conv_matrix`` / ``tc.conv_transpose_matrix`` (in a random
   sparse ``format``), applied to two random inputs, against ``nn.ConvNd`` /
   ``F.conv_transposeNd`` (float64).
3. *callables*: a random convolution wrapped as a callable (numpy in and out, torch only, or
   an ``nn.ConvNd`` module) given to ``tc.probe_matrix`` (with a random ``batch``) and
   ``toeplitz_conv.testing.assert_conv_equal``. A linear one must pass and ``probe_matrix``
   must return the torch convolution's own matrix (torch applied to the identity); a wrong
   one (``relu(conv(x))``, ``conv(x)**2``, ``|conv(x)|``, ``conv(x) + b``, a conv with a NaN
   or inf in its output, a float32 conv compared at a tolerance float32 cannot meet) must
   fail: an ``AssertionError`` from ``assert_conv_equal`` is its right answer (OK), a
   ``ValueError`` from either is a refusal; passing is WRONG. (``probe_matrix`` of the float32
   conv is linear: it must return the matrix to float32's precision.)

Outcomes of one check: *OK* the answer equals the reference (``|got - ref| <= 1e-9 *
max(1, max|ref|)`` in float64; the norms computed by an eigensolver, ``local_lipschitz`` and
``lipschitz_bound``, to a relative 1e-6); *refused* a ``ValueError`` or ``TypeError`` with a
non-empty message, *clear* when the message names something (an argument name, a node or
module of the traced model, a line of the model's source, an op, or a quoted name), or, at a
forward, says that the model reads its batch size; *WRONG* an answer that differs from the
reference (or an answer where the reference raises); *crash* any other exception (an empty
message included) or a child that died (memory); *hang* no answer within the time limit. A
case takes its worst check (wrong > crash > hang > refused > OK). The exit code is 1 when any
case is WRONG or a crash.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # the machine is shared; one case at a time, one thread

import argparse  # noqa: E402
import collections  # noqa: E402
import inspect  # noqa: E402
import multiprocessing as mp  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
import toeplitz_conv.testing  # noqa: E402,F401

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import machine_info, markdown_table  # noqa: E402

RTOL = 1e-9  # float64 answers: |got - ref| <= RTOL * max(1, max|ref|)
NORM_RTOL = 1e-6  # norms computed by an eigensolver
F32_RTOL = 1e-5  # probe_matrix of a float32 callable


# --------------------------------------------------------------------------- the random programs

from fuzz_programs import C, OPS, Program  # noqa: E402 - beside this script


# --------------------------------------------------------------------------- checks and outcomes

ORDER = {"ok": 0, "refused": 1, "hang": 2, "crash": 3, "wrong": 4}
GEOMETRY_ARGS = ("weight", "input_shape", "stride", "padding", "dilation", "groups", "padding_mode",
                 "output_padding", "kernel", "transposed")
CALLABLE_ARGS = ("fn", "input_shape", "weight", "dtype", "batch", "rtol", "atol") + GEOMETRY_ARGS
QUOTED = re.compile(r"`[^`]+`|'[^']+'|\"[^\"]+\"|\bline \d+")


def _names_something(msg: str, names) -> bool:
    """Heuristic: the message names one of ``names`` (as a word), quotes a name, or cites a
    source line."""
    if QUOTED.search(msg):
        return True
    return any(re.search(r"(?<![\w.])" + re.escape(n) + r"(?![\w])", msg) for n in names if n)


class Checks:
    """The checks of one case: each ``{'check', 'outcome', 'message', 'clear'}``."""

    def __init__(self, names=()):
        self.parts: list[dict] = []
        self.names = tuple(names)

    def add(self, check, outcome, message="", clear=True):
        self.parts.append(dict(check=check, outcome=outcome, message=str(message)[:2000], clear=bool(clear)))

    def refusal(self, check, e, clear=None):
        msg = str(e)
        if not msg.strip():
            self.add(check, "crash", f"{type(e).__name__} with an empty message")
        else:
            self.add(check, "refused", f"{type(e).__name__}: {msg}",
                     _names_something(msg, self.names) if clear is None else clear)

    def attempt(self, check, call):
        """``(True, call())``, or ``(False, None)`` after recording a refusal. Other exceptions
        propagate: the case is a crash."""
        try:
            return True, call()
        except (ValueError, TypeError) as e:
            self.refusal(check, e)
            return False, None

    def compare(self, check, got, ref, rtol=RTOL, note=""):
        got, ref = np.asarray(got), np.asarray(ref)
        if got.shape != ref.shape:
            self.add(check, "wrong", f"shape {got.shape}, expected {ref.shape}{note}")
            return False
        scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
        if ref.size and not np.all(np.isfinite(got) == np.isfinite(ref)):
            self.add(check, "wrong", f"non-finite entries differ{note}")
            return False
        diff = float(np.abs(np.nan_to_num(got - ref)).max()) if ref.size else 0.0
        if diff > rtol * scale:
            self.add(check, "wrong", f"max |got - ref| = {diff:.3g} (scale {scale:.3g}){note}")
            return False
        self.add(check, "ok")
        return True


def worst(parts) -> str:
    return max((p["outcome"] for p in parts), key=ORDER.__getitem__, default="ok")


# --------------------------------------------------------------------------- family 1: programs


def program_params(r: random.Random) -> dict:
    return dict(ops=[r.choice(OPS) for _ in range(r.randint(1, 5))], seed=r.randint(0, 2**16), size=r.randint(3, 6))


def _program_names(model) -> list[str]:
    """What a message may name: the traced graph's nodes and targets, the modules, the ops,
    the lines of ``Program.forward``, the arguments of the API."""
    names = ["module", "input_shape", "grad_output", "forward", "batch size"]
    names += [n for n, _ in model.named_modules() if n] + list(model.ops)
    names += [ln.strip() for ln in inspect.getsource(Program.forward).splitlines() if len(ln.strip()) > 6]
    try:
        gm = torch.fx.symbolic_trace(model)
        for node in gm.graph.nodes:
            names.append(node.name)
            if isinstance(node.target, str):
                names.append(node.target)
    except Exception:  # noqa: BLE001 - only for naming; the library decides what it can trace
        pass
    return names


def _reference(model, x, d):
    """Autograd's forward, input gradient and parameter gradients for ``dL/dy = d``; the input
    is cloned first (a program may change its input in place)."""
    model.zero_grad(set_to_none=True)
    leaf = x.clone().requires_grad_(True)
    y = model(leaf.clone())
    (y * d).sum().backward()
    grads = {n: (p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape)))
             for n, p in model.named_parameters()}
    return y.detach().numpy(), leaf.grad.numpy(), grads


def run_program(p: dict, ck: Checks) -> None:
    ops, seed, size = p["ops"], p["seed"], p["size"]
    model = Program(ops, seed).double().eval()
    ck.names = tuple(_program_names(model))
    shape = (C, size, size)
    ok, net = ck.attempt("compile", lambda: tc.compile(model, shape))
    if not ok:
        return
    for n in (1, 2, 3):
        x = torch.randn(n, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + n))
        try:
            y_ref = model(x.clone()).detach()
        except RuntimeError as e:
            y_ref, why = None, f"{type(e).__name__}: {e}"
        try:
            out = net.forward(x.numpy())
        except (ValueError, TypeError) as e:
            ck.refusal(f"forward N={n}", e, clear=True if "batch size" in str(e) else None)
            continue
        if y_ref is None:
            ck.add(f"forward N={n}", "wrong", f"answered where PyTorch raises ({why})")
            continue
        d = torch.ones_like(y_ref) + torch.linspace(0, 1, y_ref.numel(), dtype=y_ref.dtype).reshape(y_ref.shape)
        ck.compare(f"forward N={n}", out, y_ref.numpy())
        try:
            _, dx, pgrads = _reference(model, x, d)
        except RuntimeError:  # autograd cannot differentiate it: nothing to compare the gradients with
            continue
        ok, back = ck.attempt(f"backward N={n}", lambda: net.backward(d.numpy()))
        if not ok:
            continue
        grads, got_dx = back
        ck.compare(f"input grad N={n}", got_dx, dx)
        bad = [name for name, g in pgrads.items()
               if np.asarray(grads.get(name, np.zeros_like(g))).shape != g.shape
               or np.abs(np.asarray(grads.get(name, np.zeros_like(g))) - g).max() > RTOL * max(1.0, np.abs(g).max())]
        extra = sorted(set(grads) - set(pgrads))
        if bad or extra:
            ck.add(f"param grads N={n}", "wrong", f"differ: {bad}; not parameters: {extra}")
        else:
            ck.add(f"param grads N={n}", "ok")
    # one sample: the Jacobian and the Lipschitz constants
    x1 = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    try:
        J_ref = torch.autograd.functional.jacobian(lambda t: model(t.clone()), x1)
        J_ref = J_ref.reshape(J_ref.numel() // x1.numel(), x1.numel()).numpy()
    except RuntimeError:
        J_ref = None
    ok, J = ck.attempt("jacobian", lambda: net.jacobian(x1.numpy()[0]))
    if ok:
        if J_ref is None:
            ck.add("jacobian", "wrong", "answered where PyTorch raises")
        else:
            ck.compare("jacobian", J.toarray(), J_ref)
    ok_local, local = ck.attempt("local_lipschitz", lambda: net.local_lipschitz(x1.numpy()[0]))
    if ok_local and J_ref is not None:
        ck.compare("local_lipschitz", local, np.linalg.norm(J_ref, 2), rtol=NORM_RTOL)
    ok_bound, bound = ck.attempt("lipschitz_bound", net.lipschitz_bound)
    # autograd's one-sample Jacobian is the network's only where the network takes one sample
    # (a model that reads its batch size is compiled as the function at the traced batch)
    one_sample = not any(q["check"] == "forward N=1" and q["outcome"] == "refused" for q in ck.parts)
    lows = ([("local_lipschitz", local)] if ok_local else []) + \
        ([("||autograd Jacobian||_2", np.linalg.norm(J_ref, 2))] if J_ref is not None and one_sample else [])
    if ok_bound and lows:
        below = [f"{name} {float(low)!r}" for name, low in lows if not low <= bound * (1 + NORM_RTOL) + 1e-9]
        if below:
            ck.add("lipschitz_bound", "wrong", f"lipschitz_bound {bound!r} below " + ", ".join(below))
        else:
            ck.add("lipschitz_bound", "ok")
    # a bound with nothing to compare with (the model reads its batch size) is not counted


# --------------------------------------------------------------------------- family 2: geometries


def _per_axis(r: random.Random, dims: int, lo: int, hi: int, tuples: bool):
    return tuple(r.randint(lo, hi) for _ in range(dims)) if tuples else r.randint(lo, hi)


def geometry_params(r: random.Random, max_numel: int | None = None) -> dict:
    dims = r.choice([1, 2, 3])
    transposed = r.random() < 0.35
    tuples = r.random() < 0.3
    groups = r.choice([1, 1, 2, 3])
    cin, cout = r.randint(1, 3) * groups, r.randint(1, 3) * groups
    spatial = tuple(r.randint(1, 7 if dims < 3 else 5) for _ in range(dims))
    if max_numel:
        while cin * int(np.prod(spatial)) > max_numel:
            spatial = tuple(max(1, s - 1) for s in spatial)
    p = dict(dims=dims, transposed=transposed, cin=cin, cout=cout, groups=groups, spatial=spatial,
             kernel=_per_axis(r, dims, 1, 4, tuples), stride=_per_axis(r, dims, 1, 3, tuples),
             dilation=_per_axis(r, dims, 1, 2, tuples), seed=r.randint(0, 2**16),
             format=r.choice(["csr", "csr", "csr", "csc", "coo", "bsr", "dia", "dok", "lil"]))
    if transposed:
        p["padding"] = _per_axis(r, dims, 0, 3, tuples)
        if r.random() < 0.8:  # valid: smaller than the stride or the dilation on each axis
            s, d = (x if isinstance(x, tuple) else (x,) * dims for x in (p["stride"], p["dilation"]))
            p["output_padding"] = tuple(r.randint(0, max(a, b) - 1) for a, b in zip(s, d))
            if not tuples:
                p["output_padding"] = min(p["output_padding"])
        else:
            p["output_padding"] = _per_axis(r, dims, 0, 2, tuples)
    else:
        p["padding"] = r.choice(["same", "valid"]) if r.random() < 0.2 else _per_axis(r, dims, 0, 3, tuples)
        p["padding_mode"] = r.choice(["zeros", "zeros", "reflect", "replicate", "circular"])
    return p


def _weight(p: dict) -> torch.Tensor:
    k = p["kernel"] if isinstance(p["kernel"], tuple) else (p["kernel"],) * p["dims"]
    lead = (p["cin"], p["cout"] // p["groups"]) if p["transposed"] else (p["cout"], p["cin"] // p["groups"])
    return torch.randn(*lead, *k, dtype=torch.float64, generator=torch.Generator().manual_seed(p["seed"]))


def _torch_conv(p: dict, w: torch.Tensor, dtype=torch.float64):
    """The geometry as a torch callable on (N, *input_shape) tensors (may raise when built or
    called: torch refuses the geometry)."""
    w = w.to(dtype)
    if p["transposed"]:
        conv = getattr(F, f"conv_transpose{p['dims']}d")
        return lambda x: conv(x, w, stride=p["stride"], padding=p["padding"], output_padding=p["output_padding"],
                              groups=p["groups"], dilation=p["dilation"])
    module = getattr(nn, f"Conv{p['dims']}d")(p["cin"], p["cout"], p["kernel"], stride=p["stride"],
                                               padding=p["padding"], dilation=p["dilation"], groups=p["groups"],
                                               bias=False, padding_mode=p["padding_mode"]).to(dtype)
    with torch.no_grad():
        module.weight.copy_(w)
    module.requires_grad_(False)
    return module


def _geometry_kwargs(p: dict) -> dict:
    kw = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"], groups=p["groups"])
    if p["transposed"]:
        kw["output_padding"] = p["output_padding"]
    else:
        kw["padding_mode"] = p["padding_mode"]
    return kw


def run_geometry(p: dict, ck: Checks) -> None:
    ck.names = GEOMETRY_ARGS
    w = _weight(p)
    shape = (p["cin"], *p["spatial"])
    x = torch.randn(2, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(p["seed"] + 1))
    try:
        ref = _torch_conv(p, w)(x)
        why = ""
    except Exception as e:  # noqa: BLE001 - torch refuses the geometry
        ref, why = None, f"{type(e).__name__}: {str(e)[:200]}"
    build = tc.conv_transpose_matrix if p["transposed"] else tc.conv_matrix
    check = "conv_transpose_matrix" if p["transposed"] else "conv_matrix"
    try:
        M = build(w.numpy(), shape, **_geometry_kwargs(p), format=p["format"])
    except (ValueError, TypeError) as e:
        ck.refusal(check, e)
        if ref is not None and ref.numel():
            ck.parts[-1]["message"] += "  [torch computes this geometry]"
        return
    if ref is None:
        ck.add(check, "wrong", f"built a {M.shape} matrix where torch raises ({why})")
        return
    if M.shape != (ref[0].numel(), x[0].numel()):
        ck.add(check, "wrong", f"matrix shape {M.shape}, torch's map is {(ref[0].numel(), x[0].numel())}")
        return
    ck.compare(check, (M @ x.reshape(2, -1).numpy().T).T, ref.reshape(2, -1).numpy())


# --------------------------------------------------------------------------- family 3: callables

KINDS = ("linear", "linear", "linear", "relu", "square", "abs", "affine", "nan", "float32")


def callable_params(r: random.Random, i: int) -> dict:
    """A geometry torch accepts whose map is not zero (at most 300 inputs, so probing stays
    fast), a kind, and how the callable is written. (Of a zero map, ``relu(conv(x))`` and the
    float32 conv *are* the convolution: they must pass.)"""
    for _ in range(200):
        p = geometry_params(r, max_numel=300)
        n = p["cin"] * int(np.prod(p["spatial"]))
        try:
            with torch.no_grad():
                out = _torch_conv(p, _weight(p))(torch.eye(n, dtype=torch.float64).reshape(n, p["cin"], *p["spatial"]))
        except Exception:  # noqa: BLE001 - torch refuses it: draw again
            continue
        if out.numel() and bool(out.abs().max() > 0):
            break
    p["kind"] = KINDS[i % len(KINDS)]
    p["interface"] = r.choice(["numpy", "torch"] if p["transposed"] else ["numpy", "torch", "module"])
    p["offset"] = 10 ** r.uniform(-3, 0) * r.choice([-1, 1])  # the affine kind's b
    p["bad_index"] = r.randint(0, 10**6)  # which output is NaN (modulo its size)
    p["bad_value"] = r.choice(["nan", "inf"])
    p["batch"] = r.choice([None, None, None, 1, 2, 3, 7])  # probe_matrix's identity columns per call
    return p


def _callable(p: dict, w: torch.Tensor):
    dtype = torch.float32 if p["kind"] == "float32" else torch.float64
    conv = _torch_conv(p, w, dtype)
    kind = p["kind"]

    def wrap(y):
        if kind == "relu":
            return torch.relu(y)
        if kind == "square":
            return y ** 2
        if kind == "abs":
            return y.abs()
        if kind == "affine":
            return y + p["offset"]
        if kind == "nan":
            y = y.clone()
            y.view(y.shape[0], -1)[:, p["bad_index"] % y[0].numel()] = float(p["bad_value"])
            return y
        return y

    if p["interface"] == "numpy":  # numpy in and out
        return lambda x: wrap(conv(torch.from_numpy(np.asarray(x)).to(dtype))).numpy()
    if p["interface"] == "torch":  # refuses numpy: probe_matrix retries with torch
        return lambda x: wrap(conv(x.to(dtype)))
    return conv if kind == "linear" else (lambda x: wrap(conv(x.to(dtype))))  # torch only, as a module is


def run_callable(p: dict, ck: Checks) -> None:
    ck.names = CALLABLE_ARGS
    w = _weight(p)
    shape = (p["cin"], *p["spatial"])
    fn = _callable(p, w)
    kind = p["kind"]
    n = int(np.prod(shape))
    with torch.no_grad():
        ref = _torch_conv(p, w)(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).reshape(n, -1).T.numpy()
    # probe_matrix
    try:
        A = tc.probe_matrix(fn, shape, batch=p["batch"])
    except (ValueError, TypeError) as e:
        ck.refusal(f"{kind}: probe_matrix", e)
    else:
        if kind == "linear":
            ck.compare(f"{kind}: probe_matrix", A.toarray(), ref)
        elif kind == "float32":
            ck.compare(f"{kind}: probe_matrix", A.toarray().astype(np.float64), ref, rtol=F32_RTOL)
        else:
            ck.add(f"{kind}: probe_matrix", "wrong", f"returned a {A.shape} matrix for a callable that is not linear")
    # assert_conv_equal
    tol = dict(rtol=1e-12, atol=1e-15) if kind == "float32" else {}
    try:
        tc.testing.assert_conv_equal(fn, w, shape, transposed=p["transposed"], **_geometry_kwargs(p), **tol)
    except AssertionError as e:
        if kind == "linear":
            ck.add(f"{kind}: assert_conv_equal", "wrong", f"failed the true convolution: {str(e)[:1500]}")
        else:
            ck.add(f"{kind}: assert_conv_equal", "ok")
    except (ValueError, TypeError) as e:
        ck.refusal(f"{kind}: assert_conv_equal", e)
    else:
        if kind == "linear":
            ck.add(f"{kind}: assert_conv_equal", "ok")
        else:
            ck.add(f"{kind}: assert_conv_equal", "wrong", "passed a callable that is not the convolution")


# --------------------------------------------------------------------------- running the cases

FAMILIES = {
    "programs": (lambda r, i: program_params(r), run_program, "programs (`tc.compile`)"),
    "geometries": (lambda r, i: geometry_params(r), run_geometry,
                   "geometries (`conv_matrix`, `conv_transpose_matrix`)"),
    "callables": (callable_params, run_callable, "callables (`probe_matrix`, `assert_conv_equal`)"),
}


def params_of(family: str, seed: int, i: int) -> dict:
    return FAMILIES[family][0](random.Random(f"{seed}:{family}:{i}"), i)


def warm_up() -> float:
    """Run a few checks of each family in this process before forking, so that the lazy
    imports and torch's one-time set-ups (vmap, jvp) are paid once, not in every child
    (the cases' outcomes do not depend on it). Its seconds."""
    t0 = time.perf_counter()
    cases = [("programs", dict(ops=["conv", "relu", "tanh", "cat_halve", "avg_pool", "upsample", "skip"],
                                seed=1, size=4)),
             ("programs", dict(ops=["conv", "square", "mean_keep"], seed=2, size=3))]
    cases += [(family, params_of(family, 12345, i)) for family in ("geometries", "callables") for i in range(9)]
    for family, params in cases:
        try:
            FAMILIES[family][1](params, Checks())
        except Exception:  # noqa: BLE001 - counted when the case runs for real
            pass
    return time.perf_counter() - t0


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _child(family, params, conn, cap):
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + cap, resource.RLIM_INFINITY))
    ck = Checks()
    try:
        FAMILIES[family][1](params, ck)
    except BaseException as e:  # noqa: BLE001 - reported to the parent as a crash
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-4:])
        ck.add("(case)", "crash", f"{type(e).__name__}: {e}\n{tb}"[:2000])
    conn.send(ck.parts)
    conn.close()


def run_capped(family: str, params: dict, *, cap: int, seconds: float) -> list[dict]:
    """The case's checks, run in a forked child with at most ``cap`` more bytes of address
    space and ``seconds`` of wall time (pattern of tests/test_fuzz.py's ``run_capped``)."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(family, params, child, cap))
    p.start()
    child.close()
    if not parent.poll(seconds):
        p.kill()
        p.join()
        return [dict(check="(case)", outcome="hang", message=f"no answer within {seconds:g} s", clear=True)]
    try:
        parts = parent.recv()
    except EOFError:
        p.join()
        return [dict(check="(case)", outcome="crash", message=f"the child died (exit code {p.exitcode})", clear=True)]
    p.join()
    return parts


def _cell(n: int) -> str:
    return f"{n:,}"


def report(results: dict, args, elapsed: dict, warm: float) -> int:
    """Print the tables; the exit code."""
    rows, totals = [], collections.Counter()
    for family, cases in results.items():
        c = collections.Counter(worst(parts) for _, parts in cases)
        clear = sum(1 for _, parts in cases if worst(parts) == "refused"
                    and all(q["clear"] for q in parts if q["outcome"] == "refused"))
        c["clear"], c["cases"] = clear, len(cases)
        totals.update(c)
        rows.append([FAMILIES[family][2], _cell(len(cases)), _cell(c["ok"]), f"{c['refused']:,} ({clear:,})",
                     _cell(c["wrong"]), _cell(c["hang"]), _cell(c["crash"])])
    rows.append(["**total**", _cell(totals["cases"]), _cell(totals["ok"]),
                 f"{totals['refused']:,} ({totals['clear']:,})", _cell(totals["wrong"]), _cell(totals["hang"]),
                 _cell(totals["crash"])])
    print(markdown_table(["family", "cases", "OK", "refused (clear)", "wrong", "hangs", "crashes"], rows))
    took = ", ".join(f"{f} {elapsed[f]:.0f} s" for f in results)
    print(f"\n{totals['cases']:,} cases in {sum(elapsed.values()):.0f} s ({took}); --seed {args.seed}, "
          f"--cases {args.cases}, --timeout {args.timeout:g} s, --cap-gib {args.cap_gib:g}; warm-up before "
          f"forking {warm:.0f} s")

    print("\n### Each check (a case counts as its worst check)\n")
    for family, cases in results.items():
        per = collections.defaultdict(collections.Counter)
        for _, parts in cases:
            for q in parts:
                per[q["check"]][q["outcome"]] += 1
                if q["outcome"] == "refused" and q["clear"]:
                    per[q["check"]]["clear"] += 1
        rows = [[check, _cell(c["ok"]), f"{c['refused']:,} ({c['clear']:,})", _cell(c["wrong"]),
                 _cell(c["hang"]), _cell(c["crash"])] for check, c in per.items()]
        print(f"{FAMILIES[family][2]}:\n")
        print(markdown_table(["check", "OK", "refused (clear)", "wrong", "hangs", "crashes"], rows) + "\n")

    print("### Refusals, by message (first 90 characters; digits as #)\n")
    for family, cases in results.items():
        msgs = collections.Counter()
        for _, parts in cases:
            for q in parts:
                if q["outcome"] == "refused":
                    msgs[(q["check"].split(" N=")[0], re.sub(r"\d+", "#", q["message"].splitlines()[0])[:90],
                          q["clear"])] += 1
        if not msgs:
            continue
        print(f"{FAMILIES[family][2]}:\n")
        print(markdown_table(["check", "message", "clear", "times"],
                             [[c, m.replace("|", "\\|"), "yes" if cl else "**no**", _cell(k)]
                              for (c, m, cl), k in msgs.most_common(args.messages)]) + "\n")
    if "geometries" in results:
        torch_computes = sum(1 for _, parts in results["geometries"] for q in parts
                             if q["outcome"] == "refused" and "[torch computes this geometry]" in q["message"])
        print(f"geometries refused that torch computes (nonempty output): {torch_computes:,}\n")

    bad = [(family, i, parts) for family, cases in results.items() for i, parts in cases
           if worst(parts) in ("wrong", "crash", "hang")]
    if bad:
        print("### Reproducers (WRONG, crash, hang)\n")
        for family, i, parts in bad:
            print(f"- {family}:{i} {worst(parts).upper()} params={params_of(family, args.seed, i)!r}")
            for q in parts:
                if q["outcome"] in ("wrong", "crash", "hang"):
                    print(f"    {q['check']}: {q['outcome']}: " + q["message"].replace("\n", "\n      "))
            print(f"    rerun: python benchmarks/fuzz_totals.py --seed {args.seed} --case {family}:{i}")
        print()
    return 1 if totals["wrong"] or totals["crash"] else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=300, help="cases per family (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated, of " + ", ".join(FAMILIES))
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case (default 20)")
    ap.add_argument("--cap-gib", type=float, default=1.0, help="memory per case over the parent's (default 1)")
    ap.add_argument("--messages", type=int, default=12, help="refusal messages listed per family")
    ap.add_argument("--case", help="FAMILY:INDEX: run that case here (no fork, no cap) and print its checks")
    args = ap.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    if args.case:
        families = [args.case.partition(":")[0]]
        if not args.case.partition(":")[2].isdigit():
            ap.error(f"--case must be FAMILY:INDEX; got {args.case!r}")
    for f in families:
        if f not in FAMILIES:
            ap.error(f"unknown family {f!r}; one of {', '.join(FAMILIES)}")
    if args.cases < 0 or args.timeout <= 0 or args.cap_gib <= 0:
        ap.error("--cases must be >= 0, --timeout and --cap-gib > 0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored on return (main may run inside pytest)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=sp.SparseEfficiencyWarning)  # the 'dia' format of a conv
            warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")  # torch's, on speed
            return _run(args, families)
    finally:
        torch.set_num_threads(threads)


def _run(args, families) -> int:
    if args.case:
        family, _, i = args.case.partition(":")
        params = params_of(family, args.seed, int(i))
        print(f"{family}:{i} params={params!r}")
        ck = Checks()
        FAMILIES[family][1](params, ck)  # a crash raises here, with its traceback
        for q in ck.parts:
            print(f"  {q['check']}: {q['outcome']}" + (f" (clear: {q['clear']})" if q["outcome"] == "refused" else "")
                  + (f": {q['message']}" if q["message"] else ""))
        return 1 if worst(ck.parts) in ("wrong", "crash") else 0
    if not hasattr(os, "fork") or not os.path.exists("/proc/self/status"):
        sys.exit("capped runs need fork and /proc (Linux)")
    print(machine_info() + "\n")
    warm = warm_up()
    results, elapsed = {}, {}
    for family in families:
        t0 = time.perf_counter()
        results[family] = [(i, run_capped(family, params_of(family, args.seed, i), cap=int(args.cap_gib * 2**30),
                                          seconds=args.timeout)) for i in range(args.cases)]
        elapsed[family] = time.perf_counter() - t0
    return report(results, args, elapsed, warm)


if __name__ == "__main__":
    sys.exit(main())
