"""The loss of the training examples: softmax cross-entropy and its gradient."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .._args import as_array


def softmax_cross_entropy(logits: npt.ArrayLike,
                          target: npt.ArrayLike) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy (``F.cross_entropy``) and its gradient w.r.t. ``logits``.

    Parameters
    ----------
    logits : (N, K) array_like
    target : (N,) int array_like of class indices

    Returns
    -------
    loss : float
    grad : (N, K) ndarray
        ``(softmax(logits) - onehot(target)) / N``: the ``grad_output`` for
        :meth:`Network.backward`.

    Examples
    --------
    >>> import numpy as np, torch, torch.nn.functional as F
    >>> z, t = np.random.randn(5, 3), np.array([0, 2, 1, 1, 0])
    >>> loss, grad = softmax_cross_entropy(z, t)
    >>> abs(loss - F.cross_entropy(torch.from_numpy(z), torch.from_numpy(t)).item()) < 1e-12
    True
    """
    z = as_array(logits, "logits")
    t = as_array(target, "target")
    if z.ndim != 2 or t.shape != (z.shape[0],) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(
            f"logits must be (N, K) and target (N,) integer class indices; got "
            f"logits.shape={tuple(z.shape)}, target.shape={tuple(t.shape)} ({t.dtype})."
        )
    if t.size and (t.min() < 0 or t.max() >= z.shape[1]):
        raise ValueError(f"target must hold class indices in [0, {z.shape[1]}); got values in [{t.min()}, {t.max()}].")
    s = z - z.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    n = z.shape[0]
    loss = -logp[np.arange(n), t].mean()
    grad = np.exp(logp)
    grad[np.arange(n), t] -= 1
    return float(loss), grad / n
