"""Index arrays -> scipy.sparse: the one place a matrix of the library is assembled.

Every matrix is built as canonical CSR arrays (:mod:`toeplitz_conv.indexing` writes the indices
sorted and unique in each row) and converted to the format asked for at the end, as
``scipy.linalg``'s special matrices do.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ._args import check_choice

FORMATS = ("csr", "csc", "coo", "bsr", "dia", "dok", "lil")


def check_format(format: object) -> str:
    return check_choice("format", format, FORMATS, "scipy.sparse formats")


def csr(data: npt.ArrayLike, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int],
        format: str = "csr") -> sp.sparray:
    """The matrix of canonical CSR arrays (columns sorted, no duplicates: built that way,
    so scipy never re-sorts them) in ``format``."""
    m = sp.csr_array((data, indices, indptr), shape=tuple(shape))
    m.has_canonical_format = True
    return m if format == "csr" else m.asformat(format)
