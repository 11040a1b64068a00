"""The ``toeplitz-conv`` command, called in-process through ``cli.main`` (and once as a process)."""

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from toeplitz_conv import cli, verify  # noqa: E402


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Commands write their default files into the current folder: keep it out of the repo."""
    monkeypatch.chdir(tmp_path)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_no_command_prints_the_usage_and_an_error(capsys):
    code, out, err = run(capsys)
    assert code == 2 and out == ""
    usage, error = err.splitlines()
    assert usage.startswith("usage: toeplitz-conv")
    assert error.startswith("toeplitz-conv: error: a command is required: demo, spy, explore")


@pytest.mark.parametrize("argv", [["--help"], ["spy", "--help"], ["demo", "--help"], ["verify", "--help"]])
def test_help(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0 and out.startswith("usage: toeplitz-conv")


def test_demo_prints_the_matrices_and_writes_figures(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "--out", str(tmp_path / "figs"))
    assert code == 0, err
    assert "C of shape (4, 16)" in out
    assert "C.T @ delta" in out and "F.conv_transpose2d(delta, w)" in out
    assert "weight gradient" in out
    assert out.count("ok   ") == 3 and "FAIL" not in out
    for name in ("demo_spy.png", "demo_gradient.png"):
        path = tmp_path / "figs" / name
        assert path.stat().st_size > 1000
        assert str(path) in out  # says where


def test_demo_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toeplitz_conv", "demo", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok   weight gradient == autograd" in proc.stdout
    assert (tmp_path / "demo_spy.png").exists() and (tmp_path / "demo_gradient.png").exists()


def test_spy_draws_any_layer(capsys, tmp_path):
    out_file = tmp_path / "sub" / "C.png"
    code, out, err = run(capsys, "spy", "--input", "3x8x8", "--kernel", "4x3x3x3", "--stride", "2",
                         "--padding", "1", "--padding-mode", "reflect", "-o", str(out_file))
    assert code == 0, err
    assert "input  3x8x8 -> output 4x4x4" in out
    assert "C: 64 x 192," in out and "nonzeros" in out and "as CSR" in out
    assert out_file.stat().st_size > 1000
    assert f"wrote {out_file}" in out


def test_spy_writes_to_the_current_folder_by_default(capsys, tmp_path):
    code, out, err = run(capsys, "spy", "--input", "1x6x6", "--kernel", "2x1x3x3")
    assert code == 0, err
    assert (tmp_path / "conv_matrix.png").exists() and "wrote conv_matrix.png" in out


@pytest.mark.parametrize("extra", [
    ["--input", "2x7", "--kernel", "4x1x3", "--dilation", "2", "--groups", "2"],
    ["--input", "2x4x4x4", "--kernel", "2x2x3x3x3", "--padding", "same"],
    ["--input", "1x40x40", "--kernel", "2x1x3x3", "--mode", "density"],
])
def test_spy_1d_3d_and_options(capsys, tmp_path, extra):
    code, out, err = run(capsys, "spy", *extra, "-o", str(tmp_path / "C.svg"))
    assert code == 0, err
    assert (tmp_path / "C.svg").exists()


@pytest.mark.parametrize("argv, message", [
    (["spy", "--input", "3x8", "--kernel", "4x3x3x3"],
     "argument --kernel: --kernel must be C_outxC_in/groupsxKERNEL with one more size than --input"),
    (["spy", "--input", "3xax8", "--kernel", "4x3x3x3"],
     "argument --input: --input must be sizes like 3x8x8 or 2; got '3xax8'."),
    (["spy", "--input", "3x8x8", "--kernel", "4x3x3x3", "--stride", "0"],
     "argument --stride: --stride must contain positive sizes; got '0'."),
    (["spy", "--input", "3x8x8", "--kernel", "4x3x3x3", "--padding", "full"],
     "argument --padding: --padding must be sizes like 3x8x8 or 2 or 'same', 'valid', 'SAME', 'SAME_UPPER', 'SAME_LOWER', 'VALID'; got 'full'."),
    (["spy", "--input", "3x8x8", "--kernel", "4x3x3x3", "--padding-mode", "mirror"],
     "argument --padding-mode: invalid choice: 'mirror'"),
    (["spy", "--input", "3x8x8", "--kernel", "4x2x3x3"],
     "arguments --input 3x8x8 --kernel 4x2x3x3: input_shape[0] must equal weight.shape[1] * groups "
     "(2 * 1 = 2); got input_shape[0]=3."),
    (["spy", "--input", "3x8x8", "--kernel", "4x3x3x3", "--padding", "8", "--padding-mode", "reflect"],
     "arguments --input 3x8x8 --kernel 4x3x3x3 --padding 8 --padding-mode reflect: padding must be "
     "smaller than the input size"),
    (["spy", "--input", "3x8x8", "--kernel", "4x3x3x3", "--groups", "2x2"],
     "argument --groups: --groups must be one integer from 1 to 2,147,483,647; got '2x2'."),
    (["spy", "--kernel", "4x3x3x3"], "the following arguments are required: --input"),
    (["transpose"], "argument COMMAND: invalid choice: 'transpose'"),
    (["verify", "--atol", "small"], "argument --atol: --atol must be a finite number >= 0, such as 1e-10; "
                                    "got 'small'."),
])
def test_bad_arguments_give_one_line_and_status_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    prog = "toeplitz-conv" if argv[0] == "transpose" else f"toeplitz-conv {argv[0]}"
    assert err.startswith(f"{prog}: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unwritable_outputs_are_argument_errors(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run(capsys, "demo", "--out", str(blocker / "sub"))
    assert code == 2 and err.startswith("toeplitz-conv demo: error: argument --out: cannot write")
    assert "is a file, not a folder" in err and out == ""  # refused before the demo ran
    code, _, err = run(capsys, "spy", "--input", "1x5x5", "--kernel", "1x1x3x3", "-o", str(tmp_path / "C.xyz"))
    assert code == 2 and err.startswith("toeplitz-conv spy: error: argument -o/--output: the image file "
                                        "must end in one of ")
    assert ".png" in err and "C.xyz" in err and err.count("\n") == 1


def test_bad_arguments_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toeplitz_conv", "spy", "--input", "3x8x8",
                           "--kernel", "4x3x9x9"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("toeplitz-conv spy: error: arguments --input 3x8x8 --kernel 4x3x9x9: "
                                  "the output would be empty")
    assert proc.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_verify_passes_with_progress_and_table(capsys):
    code, out, err = run(capsys, "verify")
    assert code == 0, out
    assert "[##############################]" in out  # the progress bar, completed
    for section in ("forward", "input + weight gradient", "transposed conv"):
        assert section in out
    assert "cases  passed   max |error|" in out
    assert "checks passed against torch" in out


def test_verify_covers_every_section():
    sections = {s for s, _, _ in verify.cases()}
    assert sections == {"forward", "input + weight gradient", "transposed conv", "pooling",
                        "compiled network"}


def test_verify_exits_nonzero_on_a_mismatch(capsys, monkeypatch):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(verify, "cases", lambda: [
        ("forward", "good", lambda: 1e-16),
        ("forward", "off by one", lambda: 1.0),
        ("pooling", "crashes", broken),
    ])
    code, out, err = run(capsys, "verify")
    assert code == 1
    assert "2 of 3 checks FAILED" in out
    assert "forward: off by one: max error 1.00e+00 > atol 1e-10" in out
    assert "pooling: crashes: RuntimeError: boom" in out
    lines = [ln for ln in out.splitlines() if ln.startswith(("forward ", "pooling "))]
    assert lines[0].split()[:3] == ["forward", "2", "1"] and lines[1].split()[:3] == ["pooling", "1", "0"]


def test_progress_bar_redraws_in_place_on_a_terminal():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = verify.Progress(4, stream=stream, width=8)
    for k in range(4):
        bar.step(f"case {k}")
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n")
    assert "[########]   4/4 case 3" in text


def test_explore_command_writes_the_html(tmp_path, capsys):
    from toeplitz_conv.cli import main

    out = tmp_path / "sub" / "layer.html"
    assert main(["explore", "--input", "1x5x5", "--kernel", "1x1x3x3", "--stride", "2", "--padding", "1",
                 "-o", str(out)]) == 0
    assert out.exists() and '"out_shape": [1, 3, 3]' in out.read_text()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["explore", "--input", "1x5x5", "--kernel", "1x3x3"], r"--kernel must be C_outxC_in/groupsxKERNEL"),
    (["explore", "--input", "1x90x90", "--kernel", "1x1x3x3"], r"explore is for small layers"),
    (["explore", "--input", "1x5x5", "--kernel", "1x1x3x3", "--stride", "0"], r"argument --stride"),
])
def test_explore_command_errors_exit_2_with_one_line(argv, match, capsys):
    from toeplitz_conv.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and __import__("re").search(match, err), err


def test_animate_command_writes_a_gif(tmp_path):
    from PIL import Image

    from toeplitz_conv.cli import main

    out = tmp_path / "conv.gif"
    assert main(["animate", "--input", "1x4x4", "--kernel", "1x1x3x3", "--padding", "1", "--stride", "2",
                 "--dpi", "30", "-o", str(out)]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 4
    assert main(["animate", "--input", "1x2x2", "--kernel", "1x1x3x3", "--stride", "2", "--transposed",
                 "--dpi", "30", "-o", str(out)]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 4  # one per input pixel


def test_animate_command_error_exits_2_with_one_line(capsys):
    from toeplitz_conv.cli import main

    assert main(["animate", "--input", "5x5x5", "--kernel", "1x5x3x3", "-o", "x.gif"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "at most 4 input and 4 output channels; got 5 and 1" in err, err


def test_animate_command_draws_a_multi_channel_layer(tmp_path, capsys):
    from PIL import Image

    from toeplitz_conv.cli import main

    out = tmp_path / "two.gif"
    assert main(["animate", "--input", "2x4x4", "--kernel", "2x1x3x3", "--groups", "2", "--stride", "2", "--padding", "1",
                 "-o", str(out)]) == 0
    with Image.open(out) as im:
        assert im.n_frames == 8 and im.size[0] >= 1280  # one per output entry, both channels; projector-wide
