"""How much faster is ``animate`` now that a frame only redraws what it moves?

Each layer is animated and written as a GIF (``anim.save(path, writer="pillow", dpi=100)``)
by the current code and by an earlier version of ``toeplitz_conv/plot/animation.py`` (read
with ``git show REV:...`` and loaded next to the current package, so both use the same
matrices and checks); minimum wall time over several interleaved runs, and the ratio.

Run from the repository root::

    python benchmarks/bench_animate.py            # three layers, about 10 minutes on a busy machine
    python benchmarks/bench_animate.py --quick    # one small layer
    python benchmarks/bench_animate.py --rev abbd456   # the version to compare with
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare_min, fmt_time, markdown_table  # noqa: E402

import toeplitz_conv as tc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: The last version that cleared and redrew every artist of every frame.
BASELINE = "abbd456"

W3 = np.arange(9.0).reshape(1, 1, 3, 3) - 4
LAYERS = {  # name: (animate's arguments, in the quick set)
    "3x3 on 5x5, stride 2, padding 1 (9 frames)": (dict(weight=W3, input_shape=(1, 5, 5), stride=2, padding=1), True),
    "3x3 on 6x6, padding 1, reflect (36 frames)": (
        dict(weight=W3, input_shape=(1, 6, 6), padding=1, padding_mode="reflect"), False),
    "transposed 3x3 on 4x4, stride 2 (16 frames)": (
        dict(weight=W3, input_shape=(1, 4, 4), stride=2, padding=1, transposed=True, output_padding=1), False),
}


def load_baseline(rev: str):
    """The module ``toeplitz_conv/plot/animation.py`` as it was at ``rev``, imported inside the
    current ``toeplitz_conv.plot`` package (its relative imports resolve against it)."""
    source = subprocess.run(["git", "show", f"{rev}:toeplitz_conv/plot/animation.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "animation_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("toeplitz_conv.plot._animation_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_gif(animate, kwargs: dict, path: Path) -> None:
    anim = animate(**kwargs)
    anim.save(path, writer="pillow", dpi=100)
    plt.close("all")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small layer, two runs")
    parser.add_argument("--rev", default=BASELINE, help=f"the version to compare with (default {BASELINE})")
    args = parser.parse_args(argv)
    old = load_baseline(args.rev).animate
    out = Path(tempfile.mkdtemp())
    rows = []
    for name, (kwargs, quick) in LAYERS.items():
        if args.quick and not quick:
            continue
        paths = {"old": out / "old.gif", "new": out / "new.gif"}
        best = compare_min({"old": lambda: write_gif(old, kwargs, paths["old"]),
                            "new": lambda: write_gif(tc.animate, kwargs, paths["new"])},
                           warmup=1, min_runs=2, max_runs=2, budget=0)
        sizes = {}
        for k, p in paths.items():
            with Image.open(p) as im:
                sizes[k] = f"{im.size[0]}x{im.size[1]}, {im.n_frames} frames"
        frames = Image.open(paths["new"]).n_frames
        rows.append([name, sizes["old"], fmt_time(best["old"]), fmt_time(best["old"] / frames),
                     sizes["new"], fmt_time(best["new"]), fmt_time(best["new"] / frames),
                     f"{best['old'] / best['new']:.1f}x"])
    print(f"animate + save as GIF (pillow, dpi=100): {args.rev} against the working tree; min of "
          f"2 interleaved runs (after one warm-up)\n")
    print(markdown_table(["layer", f"{args.rev} GIF", f"{args.rev} total", "per frame", "now GIF", "now total",
                          "per frame", "speed-up"], rows))


if __name__ == "__main__":
    main()
