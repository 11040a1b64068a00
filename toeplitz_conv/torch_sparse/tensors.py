"""scipy.sparse matrices as torch sparse tensors, and compressed tensors from index arrays."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
import torch

from .._args import check_choice

if TYPE_CHECKING:
    import scipy.sparse as sp

LAYOUT_NOTE = "torch.sparse layouts supported here"


def compressed(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
               size: tuple[int, ...], layout: str) -> torch.Tensor:
    """A CSR or BSR tensor from trusted arrays (no invariant check, no beta warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (BSR|CSR) tensor support is in beta")
        make = torch.sparse_bsr_tensor if layout == "bsr" else torch.sparse_csr_tensor
        return make(crow, col, values, size=size, check_invariants=False)


def to_torch_sparse(C: sp.sparray | sp.spmatrix, *, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None,
                    layout: Literal["csr", "coo"] = "csr") -> torch.Tensor:
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
    layout = cast('Literal["csr", "coo"]',
                  check_choice("layout", layout, ("csr", "coo"), LAYOUT_NOTE))
    try:
        device = torch.device("cpu") if device is None else torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch.device or a string such as 'cpu' or 'cuda'; got {device!r}.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} needs a CUDA build of torch and a GPU; this torch has none "
            f"(torch.cuda.is_available() is False)."
        )
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
        return compressed(crow, col, data, tuple(csr.shape), "csr")
    rows = torch.repeat_interleave(torch.arange(csr.shape[0], device=device), crow.diff())
    return torch.sparse_coo_tensor(torch.stack([rows, col]), data, tuple(csr.shape),
                                   is_coalesced=True, check_invariants=False)
