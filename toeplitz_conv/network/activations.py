"""The elementwise functions of a compiled network: ``a = sigma(z)`` with its derivative.

Each is an :class:`Elementwise` pair, forward and backward side by side, in numpy with torch's
formulas (and torch's choice at the kinks: ReLU's derivative at 0 is 0, Hardtanh's is 0 at
both ends). Functions with fixed formulas are rows of :data:`ACTIVATIONS`; those with
parameters are made by the factories below (:func:`leaky_relu`, :func:`hardtanh`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, cast

import numpy as np
from scipy.special import erf, expit


class Elementwise(NamedTuple):
    """An activation ``a = sigma(z)``: ``forward(Z)`` and ``backward(delta, Z, A)`` =
    ``delta * sigma'(Z)`` (``A = sigma(Z)``, kept from the forward), torch's formulas, and
    ``lipschitz = sup |sigma'|``, its Lipschitz constant (in any norm, being elementwise), and
    ``slopes = (alpha, beta)``, the range of its secant slopes ``(sigma(a) - sigma(b)) / (a - b)``
    (``[inf sigma', sup sigma']``; ``(-lipschitz, lipschitz)`` when not given): the slope
    restriction the tighter Lipschitz certificates use."""

    forward: Callable[[np.ndarray], np.ndarray]
    backward: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    lipschitz: float
    slopes: tuple[float, float] | None = None

    @property
    def slope_range(self) -> tuple[float, float]:
        """``(alpha, beta)``: every secant slope of the function lies in ``[alpha, beta]``."""
        return self.slopes if self.slopes is not None else (-self.lipschitz, self.lipschitz)


_BETA, _KAPPA = np.sqrt(2 / np.pi), 0.044715


def _gelu_tanh_grad(delta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    t = np.tanh(_BETA * (X + _KAPPA * X ** 3))
    return cast(np.ndarray, delta * (0.5 * (1 + t) + 0.5 * X * (1 - t * t) * _BETA
                                     * (1 + 3 * _KAPPA * X * X)))  # numpy's stubs: Any


def _gelu_grad(delta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    cdf = 0.5 * (1 + erf(X * np.sqrt(0.5)))
    pdf = np.exp(-0.5 * X * X) / np.sqrt(2 * np.pi)
    return cast(np.ndarray, delta * (cdf + X * pdf))  # erf is scipy's: untyped


def _silu_grad(delta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    s = expit(X)
    return cast(np.ndarray, delta * s * (1 + X * (1 - s)))  # expit is scipy's: untyped


def _softplus0(X: np.ndarray) -> np.ndarray:
    """``log(1 + e^x)`` without overflow."""
    return cast(np.ndarray, np.logaddexp(0, X))  # numpy's stubs: Any


def _mish_grad(delta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    t = np.tanh(_softplus0(X))
    return cast(np.ndarray, delta * (t + X * expit(X) * (1 - t * t)))  # expit: untyped


def _hardswish_grad(delta: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return delta * np.where(X < -3, 0.0, np.where(X <= 3, X / 3 + 0.5, 1.0))


def leaky_relu(slope: float) -> Elementwise:
    return Elementwise(lambda X: np.where(X > 0, X, X * slope),
                       lambda delta, X, Y: np.where(X > 0, delta, delta * slope), max(1.0, abs(slope)),
                       (min(slope, 1.0), max(slope, 1.0)))


def hardtanh(lo: float = -1.0, hi: float = 1.0) -> Elementwise:
    """``clip(z, lo, hi)``; ReLU6 is ``hardtanh(0, 6)``."""
    return Elementwise(lambda X: np.clip(X, lo, hi), lambda delta, X, Y: delta * ((X > lo) & (X < hi)),
                       1.0 if hi > lo else 0.0, (0.0, 1.0 if hi > lo else 0.0))


def elu(alpha: float = 1.0) -> Elementwise:
    return Elementwise(lambda X: np.where(X > 0, X, alpha * np.expm1(np.minimum(X, 0))),
                       lambda delta, X, Y: np.where(X > 0, delta, delta * alpha * np.exp(np.minimum(X, 0))),
                       max(1.0, abs(alpha)), (min(0.0, alpha), max(1.0, alpha)))


def softplus(beta: float = 1.0, threshold: float = 20.0) -> Elementwise:
    """``log(1 + e^(beta z)) / beta``, linear where ``beta z > threshold`` (as torch)."""
    return Elementwise(lambda X: np.where(X * beta > threshold, X, _softplus0(X * beta) / beta),
                       lambda delta, X, Y: np.where(X * beta > threshold, delta, delta * expit(X * beta)), 1.0, (0.0, 1.0))


def celu(alpha: float = 1.0) -> Elementwise:
    """``max(0, z) + min(0, alpha (e^(z / alpha) - 1))``: its slope ``e^(z / alpha) <= 1``."""
    return Elementwise(lambda X: np.where(X > 0, X, alpha * np.expm1(np.minimum(X, 0) / alpha)),
                       lambda delta, X, Y: np.where(X > 0, delta, delta * np.exp(np.minimum(X, 0) / alpha)), 1.0,
                       (0.0, 1.0))


def threshold(th: float, value: float) -> Elementwise:
    """``z`` where ``z > th``, else ``value``. A jump when ``value != th``: no Lipschitz
    constant (``inf``)."""
    return Elementwise(lambda X: np.where(X > th, X, value), lambda delta, X, Y: delta * (X > th),
                       1.0 if value == th else float("inf"), (0.0, 1.0) if value == th else None)


def shrink(lambd: float, hard: bool) -> Elementwise:
    """Softshrink (``z -+ lambd`` outside ``[-lambd, lambd]``, 0 inside) or hardshrink (``z``
    outside, 0 inside: a jump of ``lambd``, no Lipschitz constant unless ``lambd == 0``)."""
    def forward(X: np.ndarray) -> np.ndarray:
        out = np.abs(X) > lambd
        return np.where(out, X if hard else X - np.sign(X) * lambd, 0.0)
    return Elementwise(forward, lambda delta, X, Y: delta * (np.abs(X) > lambd),
                       float("inf") if hard and lambd != 0 else 1.0,
                       None if hard and lambd != 0 else (0.0, 1.0))


def prelu(slopes: np.ndarray) -> Elementwise:
    """``z`` where ``z > 0``, else ``a z`` with one slope per feature (``slopes``, a column)."""
    return Elementwise(lambda X: np.where(X > 0, X, X * slopes),
                       lambda delta, X, Y: np.where(X > 0, delta, delta * slopes),
                       max(1.0, float(np.abs(slopes).max(initial=0.0))),
                       (min(1.0, float(slopes.min(initial=1.0))), max(1.0, float(slopes.max(initial=1.0)))))


_GELU_MAX = float(0.5 * (1 + erf(1.0)) + np.exp(-1.0) / np.sqrt(np.pi)) + 1e-12
_SELU_SCALE, _SELU_ALPHA = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


#: The activations with fixed formulas; the others are made by the factories above. The
#: Lipschitz constants: exact where sup |sigma'| has a closed form (GELU's is at x = sqrt(2):
#: Phi(sqrt 2) + sqrt(2) phi(sqrt 2)); for the tanh-GELU, SiLU and Mish, the maximum of |sigma'|
#: on a grid of step 1e-6 over [-12, 12] (|sigma''| <= 1, and sigma' is monotone outside),
#: rounded up by 1e-5 (their smallest slopes, found the same way, rounded down by 1e-5).
ACTIVATIONS: dict[str, Elementwise] = {
    "relu": Elementwise(lambda X: np.maximum(X, 0), lambda delta, X, Y: delta * (Y > 0), 1.0, (0.0, 1.0)),
    "relu6": hardtanh(0.0, 6.0),
    "sigmoid": Elementwise(expit, lambda delta, X, Y: delta * (1 - Y) * Y, 0.25, (0.0, 0.25)),
    "tanh": Elementwise(np.tanh, lambda delta, X, Y: delta * (1 - Y * Y), 1.0, (0.0, 1.0)),
    "gelu": Elementwise(lambda X: 0.5 * X * (1 + erf(X * np.sqrt(0.5))), _gelu_grad, _GELU_MAX,
                        (1 - _GELU_MAX, _GELU_MAX)),  # GELU'(-x) = 1 - GELU'(x)
    "gelu_tanh": Elementwise(lambda X: 0.5 * X * (1 + np.tanh(_BETA * (X + _KAPPA * X ** 3))),
                             _gelu_tanh_grad, 1.12900, (-0.12900, 1.12900)),
    "silu": Elementwise(lambda X: X * expit(X), _silu_grad, 1.09985, (-0.09985, 1.09985)),
    "mish": Elementwise(lambda X: X * np.tanh(_softplus0(X)), _mish_grad, 1.08851, (-0.11253, 1.08851)),
    "hardswish": Elementwise(lambda X: X * np.clip(X + 3, 0, 6) / 6, _hardswish_grad, 1.5, (-0.5, 1.5)),
    "hardsigmoid": Elementwise(lambda X: np.clip(X + 3, 0, 6) / 6,
                               lambda delta, X, Y: delta * ((X > -3) & (X < 3)) / 6, 1 / 6, (0.0, 1 / 6)),
    "logsigmoid": Elementwise(lambda X: -_softplus0(-X), lambda delta, X, Y: delta * expit(-X), 1.0, (0.0, 1.0)),
    "softsign": Elementwise(lambda X: X / (1 + np.abs(X)), lambda delta, X, Y: delta / (1 + np.abs(X)) ** 2, 1.0, (0.0, 1.0)),
    "tanhshrink": Elementwise(lambda X: X - np.tanh(X), lambda delta, X, Y: delta * np.tanh(X) ** 2, 1.0, (0.0, 1.0)),
    "selu": Elementwise(lambda X: _SELU_SCALE * np.where(X > 0, X, _SELU_ALPHA * np.expm1(np.minimum(X, 0))),
                        lambda delta, X, Y: delta * _SELU_SCALE * np.where(X > 0, 1.0, _SELU_ALPHA * np.exp(np.minimum(X, 0))),
                        _SELU_SCALE * _SELU_ALPHA, (0.0, _SELU_SCALE * _SELU_ALPHA)),
}
