"""Convolution layers executed as torch.sparse matrix products, on CPU and CUDA.

The same triples as the scipy core, read by torch::

    forward         y = C(W) @ x          (a stored sparse matrix, values refreshed by one gather)
    input gradient  dx = C(W).T @ delta   (its own stored matrix: a row-wise product again)
    weight grad     dW.flat[tap] = sum over triples of delta[row] * x[col]
                    (grouped by tap: an im2col gather of x along the pattern, then a matmul)

Inside the torch path rows and columns are ordered *channels-last* (position, then channel),
so that each output position reads a few contiguous runs of the input and the matrix is block
sparse with dense ``C_out/G x C_in/G`` blocks (one per kernel tap and group). On the CPU it is
stored as BSR with square tiles (MKL takes no other) of up to 8 x 8, the fastest size
measured, when ``gcd(C_out/G, C_in/G) >= 4``; as CSR otherwise and on CUDA. The public scipy
matrix of :func:`toeplitz_conv.conv_matrix` keeps the channel-first convention;
:func:`to_torch_sparse` converts such a matrix as it is.

Conventions follow PyTorch: cross-correlation, weight ``(C_out, C_in/groups, *kernel)``,
``ToeplitzConvNd`` takes the constructor of ``nn.ConvNd`` (it *is* an ``nn.ConvNd`` subclass,
so its parameters, ``state_dict``, ``.to(device)`` and initialisation are torch's own).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from math import gcd, prod

import numpy as np
import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

from . import _validate as v
from .geometry import ConvGeometry, conv_geometry
from .pattern import conv_pattern

__all__ = ["to_torch_sparse", "sparse_conv", "ToeplitzConv1d", "ToeplitzConv2d",
           "ToeplitzConv3d", "convert"]

_MATMUL_DTYPES = (torch.float32, torch.float64)
_LAYOUT_NOTE = "torch.sparse layouts supported here"
_DEVICES = ("cpu", "cuda")
_MIN_BSR_TILE = 4  # below it, CSR
_MAX_BSR_TILE = 8  # MKL's BSR kernel measured ~1.8x faster on 8x8 tiles than on 64x64
_IM2COL_CHUNK_BYTES = 2**25  # im2col gathered per batch chunk in the weight gradient


def _compressed(crow, col, values, size, layout):
    """A CSR or BSR tensor from trusted arrays (no invariant check, no beta warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (BSR|CSR) tensor support is in beta")
        make = torch.sparse_bsr_tensor if layout == "bsr" else torch.sparse_csr_tensor
        return make(crow, col, values, size=size, check_invariants=False)


# --------------------------------------------------------------------------- scipy -> torch


def to_torch_sparse(C, *, device=None, dtype=None, layout="csr"):
    """A scipy sparse matrix as a torch sparse tensor (CSR or COO) on ``device``.

    Parameters
    ----------
    C : (m, n) scipy.sparse array or matrix
        E.g. :func:`toeplitz_conv.conv_matrix`. Duplicates are summed.
    device : torch.device or str, optional
        Default: the CPU.
    dtype : torch.dtype, optional
        Default: ``C``'s dtype (float32 stays float32).
    layout : {'csr', 'coo'}, default 'csr'

    Returns
    -------
    torch.Tensor
        ``torch.sparse_csr`` (indices int64, as torch's kernels prefer) or a coalesced
        ``torch.sparse_coo`` tensor of shape ``C.shape``: ``T @ x`` equals ``C @ x``.

    Examples
    --------
    >>> import torch, torch.nn.functional as F, toeplitz_conv as tc
    >>> w, x = torch.randn(4, 3, 3, 3), torch.randn(3, 8, 8)
    >>> T = tc.to_torch_sparse(tc.conv_matrix(w, x.shape, padding=1))
    >>> T.layout, T.shape
    (torch.sparse_csr, torch.Size([256, 192]))
    >>> torch.allclose(T @ x.reshape(-1), F.conv2d(x[None], w, padding=1).reshape(-1), atol=1e-5)
    True
    """
    import scipy.sparse as sp

    if not sp.issparse(C):
        raise TypeError(
            f"C must be a scipy.sparse array or matrix (e.g. toeplitz_conv.conv_matrix(...)); "
            f"got {type(C).__name__}."
        )
    layout = v.check_choice("layout", layout, ("csr", "coo"), _LAYOUT_NOTE)
    device = torch.device("cpu") if device is None else torch.device(device)
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32; got {dtype!r}.")
    csr = sp.csr_array(C)
    csr.sum_duplicates()
    csr.sort_indices()
    data = torch.from_numpy(np.ascontiguousarray(csr.data))
    data = data.to(device=device, dtype=dtype or data.dtype)
    crow = torch.from_numpy(csr.indptr.astype(np.int64)).to(device)
    col = torch.from_numpy(csr.indices.astype(np.int64)).to(device)
    if layout == "csr":
        return _compressed(crow, col, data, tuple(csr.shape), "csr")
    rows = torch.repeat_interleave(torch.arange(csr.shape[0], device=device), crow.diff())
    return torch.sparse_coo_tensor(torch.stack([rows, col]), data, tuple(csr.shape),
                                   is_coalesced=True, check_invariants=False)


# --------------------------------------------------------------------------- structure


def _bsr_pattern(brow, bcol, n_brows, tap_start, tap_k, G, K):
    """Block CSR of a (spatial block x group) matrix from spatial blocks sorted by (row, col).

    Spatial block ``s`` joins spatial rows/cols ``brow[s]``, ``bcol[s]`` and sums kernel taps
    ``tap_k[tap_start[s]:tap_start[s + 1]]``. Every group repeats it on its own channels:
    block row ``brow * G + g``, block column ``bcol * G + g``, value ``sum_k Wk[k * G + g]``.
    Returns ``crow, col, src, owner``: block ``owner[t]`` adds arranged weight block
    ``src[t]`` (``owner is None``: one tap per block, ``src[b]`` is block ``b``'s).
    """
    cnt = np.bincount(brow, minlength=n_brows)
    srow = np.zeros(n_brows + 1, np.int64)
    np.cumsum(cnt, out=srow[1:])
    crow = np.zeros(n_brows * G + 1, np.int64)
    np.cumsum(np.repeat(cnt, G), out=crow[1:])
    nb = int(crow[-1])
    rid = np.repeat(np.arange(n_brows * G), np.repeat(cnt, G))  # block row of each block
    p, g = rid // G, rid % G
    s = srow[p] + (np.arange(nb) - crow[rid])  # spatial block of each block
    col = bcol[s] * G + g
    ntaps = np.diff(tap_start)
    if np.all(ntaps == 1):
        return crow, col, tap_k[tap_start[s]] * G + g, None
    owner = np.repeat(np.arange(nb), ntaps[s])
    t = tap_start[s][owner] + (np.arange(owner.size) - np.repeat(np.cumsum(ntaps[s]) - ntaps[s], ntaps[s]))
    return crow, col, tap_k[t] * G + g[owner], owner


def _split_blocks(crow, col, src, owner, bo, bi):
    """Split each block of a BSR pattern into ``bo x bi`` tiles: a BSR of the tiles.

    Tile ``(i, j)`` of block ``b`` reads tile ``src[b] * bo * bi + i * bi + j`` of the
    arranged weight cut into tiles; with 1 x 1 tiles (``bo x bi`` = the block) it is the CSR.
    """
    nbr = crow.size - 1
    cnt = np.diff(crow)
    nb = int(crow[-1])
    rid = np.repeat(np.arange(nbr), cnt)
    jb = np.arange(nb) - crow[rid]  # position of the block within its block row
    i = np.arange(bo)[None, :, None]
    j = np.arange(bi)[None, None, :]
    dest = (crow[rid] * bo * bi)[:, None, None] + i * (cnt[rid] * bi)[:, None, None] + (jb * bi)[:, None, None] + j
    dest = dest.reshape(-1)
    ecol = np.empty(nb * bo * bi, np.int64)
    ecol[dest] = np.broadcast_to((col * bi)[:, None, None] + j, (nb, bo, bi)).reshape(-1)
    within = (i * bi + j).reshape(1, -1)
    if owner is None:
        esrc = np.empty_like(ecol)
        esrc[dest] = ((src * bo * bi)[:, None] + within).reshape(-1)
        eowner = None
    else:
        esrc = ((src * bo * bi)[:, None] + within).reshape(-1)
        eowner = dest.reshape(nb, bo * bi)[owner].reshape(-1)
    ecrow = np.zeros(nbr * bo + 1, np.int64)
    np.cumsum(np.repeat(cnt * bi, bo), out=ecrow[1:])
    return ecrow, ecol, esrc, eowner


class _Operator:
    """One stored matrix (C or its transpose): index tensors and how to fill its values."""

    def __init__(self, crow, col, src, owner, shape, block, tile, layout, device):
        t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)
        self.crow, self.col, self.src, self.owner = t(crow), t(col), t(src), t(owner)
        self.shape, self.block, self.tile, self.layout = shape, block, tile, layout
        self.nvals = int(crow[-1])

    def values(self, arranged, out=None):
        """Fill the values from the arranged weight ``(K * G, bo, bi)``: one gather."""
        (bo, bi), t = self.block, self.tile
        if self.layout == "csr":
            arranged = arranged.reshape(-1)
        elif (bo, bi) != (t, t):
            arranged = arranged.reshape(-1, bo // t, t, bi // t, t).transpose(2, 3).reshape(-1, t, t)
        if self.owner is None:
            return torch.index_select(arranged, 0, self.src, out=out)
        if out is None:
            out = arranged.new_empty((self.nvals, *arranged.shape[1:]))
        return out.zero_().index_add_(0, self.owner, arranged.index_select(0, self.src))

    def matrix(self, arranged):
        return _compressed(self.crow, self.col, self.values(arranged), self.shape, self.layout)


class _Structure:
    """Everything of one geometry on one device that does not depend on the weights."""

    def __init__(self, g: ConvGeometry, device: torch.device, layout: str):
        pat = conv_pattern(g)
        G, K = g.groups, prod(g.kernel)
        self.geometry, self.layout, self.device = g, layout, device
        # MKL's BSR kernel takes square blocks only: tiles of gcd(C_out/G, C_in/G)
        self.tile = _bsr_tile(pat.cout_g, pat.cin_g) if layout == "bsr" else 1
        self.cin_g, self.cout_g, self.K = pat.cin_g, pat.cout_g, K
        self.p_in, self.p_out = pat.p_in, pat.p_out
        # spatial table: input position read by kernel tap k of output position p (or p_in)
        sp = np.asarray(pat.src[:, :K], dtype=np.int64)
        sp = np.where(sp == pat.pad_col, self.p_in, sp)
        # im2col gather: U[p, (ci, k)] = x_padded[ci * (p_in + 1) + sp[p, k]] for each sample
        im2col = np.arange(self.cin_g)[None, :, None] * (self.p_in + 1) + sp[:, None, :]
        self.im2col = torch.from_numpy(im2col.reshape(-1)).to(device)
        # spatial triples (p, q, k) -> spatial blocks (p, q) summing their taps
        p, k = np.nonzero(sp < self.p_in)
        q = sp[p, k]
        ops = {}
        for name, (r, c, nr) in {"C": (p, q, self.p_out), "CT": (q, p, self.p_in)}.items():
            order = np.lexsort((k, c, r))
            r_, c_, k_ = r[order], c[order], k[order]
            new = np.ones(r_.size, bool)
            new[1:] = (r_[1:] != r_[:-1]) | (c_[1:] != c_[:-1])
            tap_start = np.append(np.flatnonzero(new), r_.size)
            arrays = _bsr_pattern(r_[new], c_[new], nr, tap_start, k_, G, K)
            bo, bi = (self.cout_g, self.cin_g) if name == "C" else (self.cin_g, self.cout_g)
            shape = (g.shape[0], g.shape[1]) if name == "C" else (g.shape[1], g.shape[0])
            t = self.tile
            if (bo, bi) != (t, t):
                arrays = _split_blocks(*arrays, bo // t, bi // t)
            ops[name] = _Operator(*arrays, shape, (bo, bi), t, layout, device)
        self.C, self.CT = ops["C"], ops["CT"]

    # ------------------------------------------------------------------ weights -> values
    def arranged(self, weight, transpose=False):
        """``weight`` as ``(K * G, bo, bi)``: the blocks of tap ``k`` of group ``g``."""
        w = weight.reshape(self.geometry.groups, self.cout_g, self.cin_g, self.K)
        w = w.permute(3, 0, 2, 1) if transpose else w.permute(3, 0, 1, 2)
        return w.reshape(-1, *w.shape[2:])

    def matrix(self, weight, transpose=False):
        op = self.CT if transpose else self.C
        return op.matrix(self.arranged(weight, transpose))

    def refill(self, M, weight, transpose=False):
        """Write the values of ``weight`` into the matrix ``M`` in place (no allocation)."""
        op = self.CT if transpose else self.C
        op.values(self.arranged(weight, transpose), out=M.values())
        return M

    # ------------------------------------------------------------------ products
    @staticmethod
    def apply(M, cnp, out_channels):
        """``M @ X`` in the channels-last order, from and to ``(C, N, P)`` tensors.

        ``X[(p, c), n] = cnp[c, n, p]`` is one 2D transpose of ``cnp``, and so is the way
        back; a 3D permute ``(N, C, P) -> (P, C, N)`` measured ~5x slower than the two
        steps ``(N, C, P) -> (C, N, P)`` (contiguous rows) and a 2D transpose.
        """
        c, n, p = cnp.shape
        Y = M @ cnp.view(c * n, p).t().contiguous().view(p * c, n)  # row-major
        return Y.view(-1, out_channels * n).t().contiguous().view(out_channels, n, -1)

    def weight_grad(self, x, delta, delta_cnp=None):
        """``dW.flat[tap] = sum delta[row] * x[col]`` over the triples, grouped by tap.

        Per batch chunk: one gather of ``x`` along the pattern (the im2col rows
        ``U[(n, p), (ci, k)]``, padding reads an appended zero) and one matrix product per
        group, ``dW[g] += D[g] @ U[g]`` with ``D[g] = delta`` as ``(C_out/G, n * P_out)``.
        """
        g, G = self.geometry, self.geometry.groups
        n, taps, P = x.shape[0], self.cin_g * self.K, self.p_out
        xr = torch.nn.functional.pad(x.reshape(n * G, self.cin_g, self.p_in), (0, 1))
        xr = xr.reshape(n * G, -1)  # position p_in of each channel reads zero
        dw = x.new_zeros((G, self.cout_g, taps))
        per_sample = G * taps * P * x.element_size()
        step = max(1, _IM2COL_CHUNK_BYTES // max(per_sample, 1))
        # (a 2D index_select along dim 1 is the fast gather: ~20x a 3D one along dim 2)
        if G == 1:
            d = delta_cnp if delta_cnp is not None else _cnp(delta, self.cout_g)
            d = d.view(self.cout_g, n * P)
            for a in range(0, n, step):
                b = min(n, a + step)
                u = xr[a:b].index_select(1, self.im2col).view((b - a) * P, taps)
                dw[0].addmm_(d[:, a * P:b * P], u)
        else:
            d = delta.reshape(n, G, self.cout_g, P)
            for a in range(0, n, step):
                b = min(n, a + step)
                u = xr[a * G:b * G].index_select(1, self.im2col).view(b - a, G, P, taps)
                dw += torch.matmul(d[a:b], u).sum(0)
        return dw.reshape(g.weight_shape)


def _bsr_tile(bo: int, bi: int) -> int:
    """Side of the square BSR tiles: the largest divisor of gcd(bo, bi) up to _MAX_BSR_TILE."""
    t = gcd(bo, bi)
    return max(d for d in range(1, min(t, _MAX_BSR_TILE) + 1) if t % d == 0)


def _cnp(t, channels):
    """``(N, C, *spatial)`` as a contiguous ``(C, N, P)`` (rows of P stay contiguous: fast)."""
    return t.reshape(t.shape[0], channels, -1).transpose(0, 1).contiguous()


@lru_cache(maxsize=32)
def _structure(g: ConvGeometry, device: torch.device, layout: str) -> _Structure:
    nnz = conv_pattern(g).nnz
    index_bytes = 0 if layout == "bsr" else 16  # CSR: int64 column and gather index per entry
    v.check_size(f"the torch.sparse matrices of this {g.ndim}D convolution",
                 2 * nnz * (8 + index_bytes) + 16 * sum(g.shape),
                 f"C and C.T, 2 x {nnz:,} nonzeros")
    return _Structure(g, device, layout)


def _auto_layout(g: ConvGeometry, device: torch.device) -> str:
    """BSR on the CPU when the square tiles (gcd of the channel blocks) are big enough."""
    tile = _bsr_tile(g.in_channels // g.groups, g.out_channels // g.groups)
    return "bsr" if device.type == "cpu" and tile >= _MIN_BSR_TILE else "csr"


# --------------------------------------------------------------------------- autograd


class _Values:
    """The values of C and C.T for one structure, cached per weight version (or not at all)."""

    def __init__(self, structure: _Structure, cache: bool):
        self.structure, self.cache = structure, cache
        self._mats = {}

    def matrix(self, weight, transpose=False):
        if not self.cache:
            return self.structure.matrix(weight, transpose)
        key = (id(weight), weight.data_ptr(), weight._version, weight.dtype)
        hit = self._mats.get(transpose)
        if hit is None or hit[1].dtype != weight.dtype:
            self._mats[transpose] = (key, self.structure.matrix(weight, transpose))
        elif hit[0] != key:  # new weight values: one gather into the same buffer
            self._mats[transpose] = (key, self.structure.refill(hit[1], weight, transpose))
        return self._mats[transpose][1]


class _ToeplitzConvFunction(torch.autograd.Function):
    """``y = C(W) x + b`` with the backward read from the same structure.

    forward:  ``C @ X`` (stored C).   backward: ``dX = C.T @ D`` (stored C.T),
    ``dW`` = im2col gather along the pattern times ``D``, ``db = sum D``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, values):
        s = values.structure
        g = s.geometry
        y = s.apply(values.matrix(weight), _cnp(x, g.in_channels), g.out_channels).transpose(0, 1)
        out = torch.empty((x.shape[0], *g.out_shape), dtype=x.dtype, device=x.device)
        ov = out.view(x.shape[0], g.out_channels, s.p_out)
        if bias is None:
            ov.copy_(y)
        else:
            torch.add(y, bias.view(1, -1, 1), out=ov)
        ctx.save_for_backward(x, weight)
        ctx.values = values
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        values = ctx.values
        s, g = values.structure, values.structure.geometry
        gx = gw = gb = None
        d_cnp = _cnp(grad, g.out_channels)
        if ctx.needs_input_grad[0]:
            dx = s.apply(values.matrix(weight, transpose=True), d_cnp, g.in_channels)
            gx = torch.empty_like(x, memory_format=torch.contiguous_format)
            gx.view(x.shape[0], g.in_channels, s.p_in).copy_(dx.transpose(0, 1))
        if ctx.needs_input_grad[1]:
            gw = s.weight_grad(x, grad, d_cnp)
        if ctx.needs_input_grad[2]:
            gb = grad.sum(dim=[d for d in range(grad.dim()) if d != 1])
        return gx, gw, gb, None


def _check_call(input, weight, bias, ndim: int, in_channels: int, what: str):
    """The checks of one call; returns the input with a batch axis and whether it was added."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input of {what} must be a torch.Tensor; got {type(input).__name__}.")
    spatial = "DHW"[3 - ndim:]
    if input.dim() not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"input of {what} must have shape (N, C_in, {', '.join(spatial)}) or "
            f"(C_in, {', '.join(spatial)}) ({ndim + 2}D or {ndim + 1}D); got input.shape="
            f"{tuple(input.shape)} ({input.dim()}D)."
        )
    unbatched = input.dim() == ndim + 1
    x = input.unsqueeze(0) if unbatched else input
    if x.shape[1] != in_channels:
        raise ValueError(
            f"input of {what} must have {in_channels} channels (in_channels), on axis "
            f"{0 if unbatched else 1}; got input.shape={tuple(input.shape)}."
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(
                f"input and {name} of {what} must be on the same device; got input on "
                f"{x.device} and {name} on {t.device}. Move one with .to(device)."
            )
    if x.device.type not in _DEVICES:
        raise ValueError(
            f"{what} runs on 'cpu' or 'cuda' (torch.sparse products); got tensors on {x.device}."
        )
    if weight.dtype not in _MATMUL_DTYPES:
        raise TypeError(
            f"weight of {what} must be float32 or float64, the dtypes torch.sparse can "
            f"multiply on {x.device.type}; got {weight.dtype}. Cast the module with "
            f".float() or .double()."
        )
    for name, t in (("input", x), ("bias", bias)):
        if t is not None and t.dtype != weight.dtype:
            raise TypeError(
                f"{name} of {what} must have the weight's dtype {weight.dtype}; got {t.dtype}."
            )
    return x, unbatched


def sparse_conv(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros", *, sparse_layout="auto"):
    """Functional convolution through the sparse matrix, like ``F.conv1d/2d/3d``.

    Parameters
    ----------
    input : (N, C_in, *spatial) or (C_in, *spatial) torch.Tensor
    weight : (C_out, C_in/groups, *kernel) torch.Tensor
    bias : (C_out,) torch.Tensor, optional
    stride, padding, dilation, groups : as ``torch.nn.functional.conv2d``
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, default 'zeros'
        As ``nn.Conv2d(padding_mode=...)`` (the functional torch API has zeros only).
    sparse_layout : {'auto', 'csr', 'bsr'}, default 'auto'
        Storage of the matrix: BSR (dense ``C_out/groups x C_in/groups`` blocks, one per tap;
        the CPU default for wide layers) or CSR.

    Returns
    -------
    torch.Tensor
        ``(N, C_out, *out_spatial)``, differentiable in ``input``, ``weight`` and ``bias``.
        The structure is cached per geometry and device; the values are gathered on every
        call (the modules cache them per weight version).

    Examples
    --------
    >>> import torch, torch.nn.functional as F, toeplitz_conv as tc
    >>> x = torch.randn(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    >>> w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> y = tc.sparse_conv(x, w, stride=2, padding=1)
    >>> torch.allclose(y, F.conv2d(x, w, stride=2, padding=1))
    True
    >>> x, w = x[:1, :2, :4, :4].detach().requires_grad_(), w[:2, :2].detach().requires_grad_()
    >>> f = lambda x, w: tc.sparse_conv(x, w, padding=1)
    >>> torch.autograd.gradcheck(f, (x, w), fast_mode=True)
    True
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor; got {type(weight).__name__}.")
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        raise ValueError(
            f"weight must have 3, 4 or 5 dimensions, (C_out, C_in/groups, *kernel); got "
            f"weight.shape={tuple(weight.shape)}."
        )
    what = f"sparse_conv ({n}D)"
    x, unbatched = _check_call(input, weight, bias, n, weight.shape[1] * groups, what)
    values = _Values(_plan(weight, x, stride, padding, dilation, groups, padding_mode,
                           sparse_layout), cache=False)
    y = _ToeplitzConvFunction.apply(x, weight, bias, values)
    return y.squeeze(0) if unbatched else y


def _plan(weight, x, stride, padding, dilation, groups, padding_mode, sparse_layout):
    g = conv_geometry(tuple(weight.shape), tuple(x.shape[1:]), stride=stride, padding=padding,
                      dilation=dilation, groups=groups, padding_mode=padding_mode)
    layout = v.check_choice("sparse_layout", sparse_layout, ("auto", "csr", "bsr"), _LAYOUT_NOTE)
    if layout == "auto":
        layout = _auto_layout(g, x.device)
    return _structure(g, x.device, layout)


# --------------------------------------------------------------------------- modules


class _ToeplitzConvNd:
    """Mixin: ``nn.ConvNd`` whose forward is the sparse matrix product."""

    _ndim: int
    _torch_conv: type

    def __init__(self, *args, sparse_layout="auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.sparse_layout = v.check_choice("sparse_layout", sparse_layout, ("auto", "csr", "bsr"), _LAYOUT_NOTE)
        self._values = {}

    @classmethod
    def from_conv(cls, conv, *, sparse_layout="auto"):
        """A Toeplitz copy of ``conv`` (an ``nn.ConvNd`` of the same rank): same arguments,
        device, dtype and weights (copied)."""
        if not isinstance(conv, cls._torch_conv):
            raise TypeError(
                f"{cls.__name__}.from_conv needs an nn.{cls._torch_conv.__name__}; got "
                f"{type(conv).__name__}."
            )
        w = conv.weight
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  device=w.device, dtype=w.dtype, sparse_layout=sparse_layout)
        with torch.no_grad():
            new.weight.copy_(w)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        new.train(conv.training)
        return new

    def _apply(self, fn, *args, **kwargs):
        self._values = {}  # new device or dtype: structures and values are rebuilt lazily
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        return {**state, "_values": {}}  # copies and pickles rebuild their matrices lazily

    def refresh(self):
        """Forget the cached matrix values (needed only after writing to ``weight.data``)."""
        self._values = {}

    def forward(self, input):
        what = type(self).__name__
        x, unbatched = _check_call(input, self.weight, self.bias, self._ndim, self.in_channels, what)
        key = (tuple(x.shape[2:]), x.device)
        vals = self._values.get(key)
        if vals is None:
            plan = _plan(self.weight, x, self.stride, self.padding, self.dilation, self.groups,
                         self.padding_mode, self.sparse_layout)
            vals = self._values[key] = _Values(plan, cache=True)
        y = _ToeplitzConvFunction.apply(x, self.weight, self.bias, vals)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self):
        return super().extra_repr() + f", sparse_layout={self.sparse_layout!r}"


_MODULE_DOC = """A drop-in ``nn.Conv{n}d`` whose forward is one torch.sparse matrix product.

    Takes the constructor of ``torch.nn.Conv{n}d`` (``in_channels, out_channels, kernel_size,
    stride, padding, dilation, groups, bias, padding_mode, device, dtype``) plus
    ``sparse_layout`` ({{'auto', 'csr', 'bsr'}}); ``weight`` and ``bias`` are the same
    parameters (it subclasses ``nn.Conv{n}d``), so optimizers, ``state_dict`` and
    ``.to(device)`` work unchanged.

    The sparsity structure is built once per input spatial size and device; the matrix values
    (and those of its transpose, for the input gradient) are refreshed by one gather when the
    weight's version changes, e.g. after an optimizer step. Writing through ``weight.data``
    bypasses the version counter: call :meth:`refresh` after it. Backward: ``dx = C.T @ delta``
    from a stored transpose, ``dW`` from the pattern's im2col gather and a matmul.

    Examples
    --------
    >>> import torch, toeplitz_conv as tc
    >>> conv = torch.nn.Conv{n}d(3, 4, 3, padding=1, padding_mode="circular").double()
    >>> tconv = tc.ToeplitzConv{n}d.from_conv(conv)
    >>> x = torch.randn({shape}, dtype=torch.float64)
    >>> torch.allclose(tconv(x), conv(x))
    True
    >>> tconv(x).sum().backward(); conv(x).sum().backward()
    >>> torch.allclose(tconv.weight.grad, conv.weight.grad)
    True
    """


def _module(n: int, base: type) -> type:
    shape = ", ".join(["2", "3"] + ["6"] * n)
    cls = type(f"ToeplitzConv{n}d", (_ToeplitzConvNd, base),
               {"_ndim": n, "_torch_conv": base, "__doc__": _MODULE_DOC.format(n=n, shape=shape),
                "__module__": __name__})
    return cls


ToeplitzConv1d = _module(1, nn.Conv1d)
ToeplitzConv2d = _module(2, nn.Conv2d)
ToeplitzConv3d = _module(3, nn.Conv3d)
_TWINS = {nn.Conv1d: ToeplitzConv1d, nn.Conv2d: ToeplitzConv2d, nn.Conv3d: ToeplitzConv3d}


def convert(model, *, sparse_layout="auto"):
    """Swap every ``nn.Conv1d/2d/3d`` of ``model`` for its Toeplitz twin, keeping the weights.

    Parameters
    ----------
    model : torch.nn.Module
        Converted in place (a bare ``nn.ConvNd`` is returned converted). Only modules of the
        exact types ``nn.Conv1d/2d/3d`` are swapped: subclasses may override ``forward``.
    sparse_layout : {'auto', 'csr', 'bsr'}, default 'auto'

    Returns
    -------
    torch.nn.Module
        ``model``. The twins hold *copies* of the weights: build the optimizer afterwards.

    Examples
    --------
    >>> import torch, toeplitz_conv as tc
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    >>> x = torch.randn(5, 1, 10, 10)
    >>> ref = net(x)
    >>> net = tc.convert(net)
    >>> type(net[0]).__name__, torch.allclose(net(x), ref, atol=1e-5)
    ('ToeplitzConv2d', True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
    v.check_choice("sparse_layout", sparse_layout, ("auto", "csr", "bsr"), _LAYOUT_NOTE)
    if type(model) in _TWINS:
        return _TWINS[type(model)].from_conv(model, sparse_layout=sparse_layout)
    for name, child in list(model.named_children()):
        if type(child) in _TWINS:
            setattr(model, name, _TWINS[type(child)].from_conv(child, sparse_layout=sparse_layout))
        else:
            convert(child, sparse_layout=sparse_layout)
    return model
