"""Draw the README's pictures into docs/images/ (run by hand, not by the tests).

    python scripts/make_readme_images.py [--out docs/images]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from toeplitz_conv import plot  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    # a strided, padded, multi-channel layer: 3x8x8 -> 4x4x4, 3x3 kernel, stride 2, padding 1
    w = rng.standard_normal((4, 3, 3, 3))
    C = tc.conv_matrix(w, (3, 8, 8), stride=2, padding=1)
    geom = tc.conv_geometry(w.shape, (3, 8, 8), stride=2, padding=1)
    fig = plot.spy(C, input_shape=geom.in_shape, output_shape=geom.out_shape,
                   layer=f"{geom.describe()} on 3x8x8 -> 4x4x4").figure
    fig.savefig(out / "spy_conv.png", dpi=110)
    plt.close(fig)

    # the four-panel gradient figure: an image, an edge kernel, L = ||y||^2 / 2
    yy, xx = np.mgrid[0:16, 0:16]
    img = ((xx - 7.5) ** 2 + (yy - 7.5) ** 2 < 30).astype(float) + 0.1 * rng.standard_normal((16, 16))
    sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    fig = plot.gradient_figure(img, sobel, padding=1)
    fig.savefig(out / "gradient.png", dpi=110)
    plt.close(fig)

    # the symbolic 4x16 matrix of the convolution-arithmetic guide (3x3 kernel, 4x4 input)
    M = plot.symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4))
    ax = plot.symbolic_figure(M, title="3x3 kernel on a 4x4 input, no padding, stride 1: the 4 x 16 matrix C")
    ax.figure.savefig(out / "symbolic_4x16.png", dpi=110, bbox_inches="tight")
    plt.close(ax.figure)
    # convolution in motion: a 3x3 kernel, stride 2, padding 1 on a 5x5 input, row by row of C
    anim = plot.animate(np.arange(9.0).reshape(1, 1, 3, 3) - 4, (1, 5, 5), stride=2, padding=1)
    anim.save(out / "conv_motion.gif", writer="pillow", dpi=100)
    plt.close("all")
    for name in ("spy_conv.png", "gradient.png", "symbolic_4x16.png", "conv_motion.gif"):
        print("wrote", out / name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    main(parser.parse_args().out)
