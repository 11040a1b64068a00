"""The scipy core imports and builds matrices without torch (and without matplotlib/sympy)."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    for name in ("torch", "matplotlib", "sympy"):
        sys.modules[name] = None          # any `import name` now raises ImportError
    import numpy as np
    import toeplitz_conv as tc

    w = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    x = np.arange(16.0).reshape(1, 4, 4)
    C = tc.conv_matrix(w, x.shape)
    # the 2x2 valid cross-correlation, written out by hand
    ref = np.array([[(x[0, i:i + 3, j:j + 3] * w[0, 0]).sum() for j in range(2)] for i in range(2)])
    assert np.allclose(C @ x.ravel(), ref.ravel()), (C @ x.ravel(), ref)
    dW = tc.conv_weight_grad(x, np.ones((1, 2, 2)), w.shape)
    assert np.allclose(dW[0, 0], sum(x[0, i:i + 3, j:j + 3] for i in range(2) for j in range(2)))
    P = tc.avg_pool_matrix((1, 4, 4), 2)
    assert np.allclose(P @ x.ravel(), x[0].reshape(2, 2, 2, 2).mean(axis=(1, 3)).ravel())
    assert tc.operator_norm(w, (1, 4, 4)) > 0
    try:
        tc.ToeplitzConv2d
    except ImportError:
        pass
    else:
        raise AssertionError("ToeplitzConv2d should need torch")
    print("ok")
    """
)


def test_core_without_torch_matplotlib_sympy():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_torch_too_old_is_refused_by_name():
    """torch older than the drop-in modules' calls: an ImportError naming both versions, not an
    AttributeError from deep inside at the first forward."""
    script = textwrap.dedent(
        """
        import torch
        torch.__version__ = "2.1.2+cpu"
        import toeplitz_conv as tc
        w = tc.conv_matrix([[[1.0, 2.0]]], (1, 3))   # the scipy core still works
        try:
            tc.ToeplitzConv2d
        except ImportError as e:
            print(e)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "needs torch >= 2.4; found torch 2.1.2+cpu" in out.stdout, out.stdout
