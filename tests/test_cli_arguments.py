"""The command checks every argument before any work: a bad one is one line on stderr, argparse
style (``toeplitz-conv spy: error: argument --dpi: ...``), naming the flag, the rule and what
arrived, with exit status 2; nothing is built and nothing is written.

The refusals run with the command's matrix builders and drawings replaced by a trap (the
``no_work`` fixture), so a check that came too late fails the test, and no large matrix is ever
built here: the sizes are estimated from the geometry alone.
"""

import subprocess
import sys
from importlib import metadata

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from toeplitz_conv import _cli_args, _cli_figures, _cli_limits, cli, verify  # noqa: E402

LAYER = ["--input", "1x5x5", "--kernel", "1x1x3x3"]
TINY = ["--input", "1x2x2", "--kernel", "1x1x2x2"]  # one output pixel: a one-frame GIF


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Commands write their default files into the current folder: keep it out of the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOEPLITZ_CONV_MAX_BYTES", raising=False)


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Fail the test if the command builds a matrix, draws or writes before refusing."""

    def trap(*args, **kwargs):
        raise AssertionError("work was done before the arguments were checked")

    for module in (cli, _cli_figures):  # the demo and verify; the commands that draw
        for name in ("conv_matrix", "conv_weight_grad", "spy", "explore", "animate", "gradient_figure"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, trap)
    monkeypatch.setattr(verify, "cases", trap)
    yield
    written = [p.name for p in tmp_path.rglob("*") if p.suffix in (".png", ".gif", ".html", ".htm")]
    assert not written, written


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, argv, flag, *fragments):
    """Run ``argv``: status 2, one line on stderr naming ``flag``, each of ``fragments`` in it."""
    code, out, err = run(capsys, *argv)
    prog = f"toeplitz-conv {argv[0]}"
    assert code == 2, (code, out, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"{prog}: error: "), err
    assert flag in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


# --------------------------------------------------------------------------- -o / --out


def test_a_name_without_suffix_gets_the_default_one_and_the_message_says_so(capsys, tmp_path):
    code, out, err = run(capsys, "spy", *LAYER, "-o", "myplot")
    assert code == 0, err
    assert (tmp_path / "myplot.png").exists() and not (tmp_path / "myplot").exists()
    assert out.splitlines()[-1] == "wrote myplot.png"
    code, out, err = run(capsys, "explore", *LAYER, "-o", "page")
    assert code == 0, err
    assert (tmp_path / "page.html").exists() and out.startswith("wrote page.html:")


@pytest.mark.parametrize("cmd, default", [("spy", "conv_matrix.png"), ("explore", "layer.html"),
                                          ("animate", "conv.gif")])
def test_a_folder_takes_the_default_file_name(capsys, tmp_path, cmd, default):
    (tmp_path / "figs").mkdir()
    extra = ["--dpi", "10"] if cmd == "animate" else []
    code, out, err = run(capsys, cmd, *TINY, *extra, "-o", "figs")
    assert code == 0, err
    assert (tmp_path / "figs" / default).exists() and not list(tmp_path.glob("figs.*"))
    assert f"wrote figs/{default}" in out
    code, out, err = run(capsys, cmd, *TINY, *extra, "-o", "new/")  # a folder still to make
    assert code == 0, err
    assert (tmp_path / "new" / default).exists()


@pytest.mark.parametrize("cmd", ["spy", "explore", "animate"])
@pytest.mark.parametrize("name, fragment", [
    ("", "-o/--output must name a file or a folder; got ''."),
    (" ", "-o/--output must name a file or a folder; got ' '."),
    ("blocker/C", "'blocker' is a file, not a folder; got 'blocker/C'."),
])
def test_bad_output_names_are_refused_before_work(capsys, tmp_path, no_work, cmd, name, fragment):
    (tmp_path / "blocker").write_text("")
    refused(capsys, [cmd, *LAYER, "-o", name], "argument -o/--output:", fragment)


@pytest.mark.parametrize("cmd, name, rule", [
    ("spy", "C.xyz", "the image file must end in one of "),
    ("explore", "layer.txt", "the HTML file must end in one of .htm, .html (or name a folder); got 'layer.txt'."),
    ("animate", "conv.mp4", "the GIF file must end in .gif (or name a folder); got 'conv.mp4'."),
])
def test_unknown_file_types_are_refused_before_work(capsys, no_work, cmd, name, rule):
    err = refused(capsys, [cmd, *LAYER, "-o", name], "argument -o/--output:", rule)
    assert cmd != "spy" or (".png, " in err and ".pdf, " in err and err.endswith("got 'C.xyz'.\n"))


@pytest.mark.parametrize("make", ["file", "empty"])
def test_demo_checks_its_folder_first(capsys, tmp_path, no_work, make):
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    name = "passwd" if make == "file" else ""
    rule = "an existing file" if make == "file" else "--out must name a folder; got ''."
    err = refused(capsys, ["demo", "--out", name], "argument --out:", rule)
    assert "C of shape" not in err


@pytest.mark.parametrize("name", ["demo.png", "figures/demo.svg", "out.html"])
def test_demo_refuses_a_file_name_for_its_folder(capsys, tmp_path, no_work, name):
    err = refused(capsys, ["demo", "--out", name], "argument --out:",
                  "--out must be a folder (created if missing), the files are written in it;")
    assert f"got '{name}', a file name" in err and not (tmp_path / name).exists()


def test_the_kernel_help_says_the_transposed_layout_where_there_is_transposed(capsys):
    text = {}
    for cmd in ("animate", "verify", "spy"):
        code, text[cmd], _ = run(capsys, cmd, "--help")
        assert code == 0
    assert "with --transposed torch's ConvTranspose layout (C_in, C_out/groups, *kernel)" in " ".join(
        text["animate"].split())
    assert "(C_in, C_out/groups, *kernel)" in " ".join(text["verify"].split())
    assert "--transposed" not in text["spy"]


def test_explore_refuses_a_layer_past_its_nonzero_cap_naming_the_flags(capsys, no_work):
    refused(capsys, ["explore", "--input", "64x8x8", "--kernel", "64x64x3x3", "--padding", "1"],
            "arguments --input 64x8x8 --kernel 64x64x3x3 --padding 1:",
            "explore is for small layers, at most 250,000 nonzeros in C (to keep the file small); got 1,982,464.")


def test_per_side_padding_and_symmetric_mode_on_the_command_line(capsys):
    args = cli.build_parser().parse_args(["spy", "--input", "2x5x6", "--kernel", "3x2x3x3",
                                          "--padding", "0:1x2:0", "--padding-mode", "symmetric"])
    geom = _cli_args.layer_geometry(args)
    assert (geom.pad_lo, geom.pad_hi, geom.padding_mode) == ((0, 2), (1, 0), "symmetric")
    assert _cli_args.layer_flags(args).endswith("--padding 0:1x2:0 --padding-mode symmetric")
    refused(capsys, ["spy", "--input", "2x5x6", "--kernel", "3x2x3x3", "--padding", "0:1"], "argument --padding:",
            "--padding must be one size or 2 (one per spatial axis of --input 2x5x6), or 2 LO:HI pairs; got '0:1'.")
    refused(capsys, ["spy", "--input", "2x5x6", "--kernel", "3x2x3x3", "--padding", "0:1x2"], "argument --padding:",
            "--padding per side must be LO:HI for every spatial axis, e.g. 0:1x1:0; got '0:1x2'.")


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("argv, flag, fragment", [
    (["spy", *LAYER, "--dpi", "0"], "argument --dpi:", "--dpi must be an integer from 10 to 1000; got '0'."),
    (["spy", *LAYER, "--dpi", "100000"], "argument --dpi:", "from 10 to 1000; got '100000'."),
    (["spy", *LAYER, "--dpi", "72.5"], "argument --dpi:", "got '72.5'."),
    (["animate", *LAYER, "--dpi", "-3"], "argument --dpi:", "got '-3'."),
    (["spy", *LAYER, "--seed", "-5"], "argument --seed:", "--seed must be a non-negative integer; got '-5'."),
    (["explore", *LAYER, "--seed", "one"], "argument --seed:", "got 'one'."),
    (["verify", "--atol", "-1"], "argument --atol:", "--atol must be a finite number >= 0, such as 1e-10; got '-1'."),
    (["verify", "--atol", "nan"], "argument --atol:", "got 'nan'."),
    (["verify", "--atol", "inf"], "argument --atol:", "got 'inf'."),
    (["spy", *LAYER, "--stride", "99999999999999999999"], "argument --stride:",
     "--stride must contain sizes of at most 2,147,483,647 (2**31 - 1); got '99999999999999999999'."),
    (["spy", "--input", "1x99999999999", "--kernel", "1x1x3"], "argument --input:", "at most 2,147,483,647"),
    (["spy", *LAYER, "--padding", "-1"], "argument --padding:", "non-negative sizes; got '-1'."),
    (["spy", *LAYER, "--dilation", "nan"], "argument --dilation:", "sizes like 3x8x8 or 2; got 'nan'."),
    (["spy", "--input", "", "--kernel", "1x1x3x3"], "argument --input:", "got ''."),
    (["animate", *LAYER, "--groups", "0"], "argument --groups:", "from 1 to 2,147,483,647; got '0'."),
    (["explore", *LAYER, "--groups", "99999999999999999999"], "argument --groups:", "got '99999999999999999999'."),
])
def test_numbers_out_of_range_name_their_flag(capsys, no_work, argv, flag, fragment):
    refused(capsys, argv, flag, fragment)


@pytest.mark.parametrize("argv, flag, fragment", [
    (["spy", *LAYER, "--stride", "2x2x2"], "argument --stride:",
     "--stride must be one size or 2 (one per spatial axis of --input 1x5x5); got '2x2x2'."),
    (["explore", *LAYER, "--padding", "1x1x1"], "argument --padding:", "one size or 2"),
    (["spy", "--input", "3x8", "--kernel", "4x3x3x3"], "argument --kernel:", "one more size than --input"),
    (["spy", "--input", "1x4x4x4x4", "--kernel", "1x1x2x2x2x2"], "argument --kernel:", "1 to 3 spatial sizes"),
    (["animate", "--input", "1x4x4x4", "--kernel", "1x1x2x2x2"], "argument --kernel:",
     "animate draws 1D or 2D layers: --kernel must be OUTxINxK or OUTxINxKHxKW; got '1x1x2x2x2'."),
    (["animate", *LAYER, "--transposed", "--padding", "same"], "argument --padding:",
     "the transposed convolution takes sizes or TensorFlow's / ONNX's SAME, SAME_LOWER, VALID, not 'same' or 'valid'"),
    (["animate", *LAYER, "--transposed", "--padding-mode", "reflect", "--padding", "1"], "argument --padding-mode:",
     "pads with zeros only"),
    (["spy", "--input", "4x8x8", "--kernel", "4x2x3x3", "--groups", "3"],
     "arguments --input 4x8x8 --kernel 4x2x3x3 --groups 3:", "groups must divide"),
    (["explore", *LAYER, "--padding", "same", "--stride", "2"], "arguments --input 1x5x5 --kernel 1x1x3x3 --stride 2 "
     "--padding same:", "padding='same' needs stride 1"),
    (["spy", *LAYER, "--dilation", "1000"], "--dilation 1000:", "the output would be empty"),
    (["spy", *LAYER, "--foo"], "unrecognized arguments: --foo", ""),
])
def test_inconsistent_layers_name_their_flags(capsys, no_work, argv, flag, fragment):
    refused(capsys, argv, flag, fragment)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("argv, fragment", [
    (["spy", "--input", "3x100000000x100000000", "--kernel", "1x3x3x3"], "spy would need at least"),
    (["spy", *LAYER, "--padding", "99999999"], "; the index table 7.67e+03 PiB (about 2**62 bytes)), more than the memory limit"),
    (["spy", "--input", "100000x8x8", "--kernel", "100000x100000x3x3"], "(the random weights 670.6 GiB;"),
    (["animate", "--input", "1x2147483647", "--kernel", "1x1x3"], "one frame per output pixel, at most 256"),
    (["explore", "--input", "1x2147483647", "--kernel", "1x1x3"], "explore is for small layers, at most 4,096"),
])
def test_huge_layers_are_refused_from_their_geometry(capsys, no_work, argv, fragment):
    refused(capsys, argv, "arguments --input", fragment)


def test_the_memory_limit_is_the_library_s_and_its_message_says_how_to_move_it(capsys, monkeypatch, no_work):
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", "5000000")
    argv = ["spy", "--input", "8x32x32", "--kernel", "16x8x3x3", "--padding", "1"]
    err = refused(capsys, argv, "arguments --input 8x32x32 --kernel 16x8x3x3 --padding 1:",
                  "spy would need about", "more than the memory limit of 4.8 MiB (from TOEPLITZ_CONV_MAX_BYTES).")
    nnz = 16 * 8 * (32 * 3 - 2) ** 2  # per axis 32 outputs x 3 taps, two of them on the padding
    assert f"the 16,384 x 8,192 matrix: {nnz:,} nonzeros as CSR" in err, err
    for cmd in ("explore", "animate"):
        monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", "100")
        refused(capsys, [cmd, *LAYER], "arguments --input 1x5x5 --kernel 1x1x3x3:", f"{cmd} would need")


@pytest.mark.parametrize("argv", [
    ["--input", "2x9x9", "--kernel", "3x2x3x3", "--padding", "2"],
    ["--input", "2x9x9", "--kernel", "3x2x3x3", "--padding", "1", "--padding-mode", "circular"],
    ["--input", "4x12", "--kernel", "4x1x5", "--groups", "4", "--dilation", "2", "--mode", "values"],
])
def test_a_layer_the_estimate_lets_through_the_library_builds(capsys, monkeypatch, argv):
    """At a limit equal to the command's estimate the library's own checks pass (the estimate
    is never smaller than theirs); one byte less and the command refuses before building."""
    args = cli.build_parser().parse_args(["spy", *argv])
    geom = _cli_args.layer_geometry(args)
    total = _cli_limits.check_memory(args, "spy", geom, _cli_limits.SPY_BYTES_PER_NONZERO,
                                     _cli_limits.spy_image(geom, args.mode))
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", str(total))
    code, _, err = run(capsys, "spy", *argv, "-o", "C.png")
    assert code == 0, err
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", str(total - 1))
    monkeypatch.setattr(_cli_figures, "conv_matrix", lambda *a, **k: pytest.fail("built past the limit"))
    refused(capsys, ["spy", *argv], "arguments --input", "more than the memory limit")


def test_values_mode_is_refused_by_the_size_of_its_dense_image(capsys, monkeypatch, no_work):
    monkeypatch.setenv("TOEPLITZ_CONV_MAX_BYTES", "5000000")
    refused(capsys, ["spy", "--input", "1x40x40", "--kernel", "1x1x3x3", "--mode", "values"], "argument --mode:",
            "--mode values draws a dense image of every entry, 1,444 x 1,600 here", "--mode density draws any size",
            "got 'values'.")


def test_a_spy_image_past_50_megapixels_is_refused_before_the_matrix(capsys, no_work):
    refused(capsys, ["spy", *LAYER, "--dpi", "1000"], "argument --dpi:", "at 1000 dpi would be",
            "more than 50 megapixels; got 1000.")


def test_an_animation_past_50_megapixels_a_frame_is_refused_before_drawing(capsys, tmp_path):
    refused(capsys, ["animate", *TINY, "--dpi", "1000"], "argument --dpi:", "each frame of",
            "more than 50 megapixels; got 1000.")
    assert not list(tmp_path.iterdir())


def test_an_animation_whose_frames_exceed_memory_is_refused(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(_cli_limits, "memory_limit", lambda: (3_000_000, "a test"))
    refused(capsys, ["animate", *LAYER, "--dpi", "200"], "argument --dpi:", "the GIF's 9 frames of",
            "more than the memory limit of 2.9 MiB (a test; the TOEPLITZ_CONV_MAX_BYTES environment")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, fragment", [
    (["--input", "1x50x50", "--kernel", "1x1x3x3"], "one frame per output pixel, at most 256"),
    (["--input", "1x20x20", "--kernel", "1x1x3x3", "--transposed"], "one frame per input pixel"),
    (["--input", "1x5x5", "--kernel", "1x1x3x3", "--padding", "20", "--stride", "20"],
     "every cell of the padded input in each frame, at most 1,024 cells; got 2,025."),
])
def test_animations_too_long_to_watch_are_refused(capsys, no_work, argv, fragment):
    refused(capsys, ["animate", *argv], "arguments --input", fragment)


# --------------------------------------------------------------------------- the command itself


def test_version_comes_from_the_installed_metadata(capsys):
    code, out, err = run(capsys, "--version")
    assert code == 0 and err == ""
    assert out == f"toeplitz-conv {metadata.version('toeplitz-conv')}\n"


def test_version_falls_back_to_the_package_when_not_installed(capsys, monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli.metadata, "version", missing)
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"toeplitz-conv {tc.__version__}\n"


def test_running_out_of_memory_anyway_is_one_line(capsys, monkeypatch):
    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 2.2 GiB")

    monkeypatch.setattr(_cli_figures, "conv_matrix", exhausted)  # spy's matrix
    code, _, err = run(capsys, "spy", *LAYER)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("toeplitz-conv spy: error: the layer is too large for this machine (MemoryError")


def test_verify_refuses_a_bad_tolerance_itself():
    with pytest.raises(ValueError, match=r"atol must be a finite number >= 0; got atol=-1"):
        verify.run(-1)
    with pytest.raises(TypeError, match=r"atol must be a finite number >= 0; got '1e-3'"):
        verify.run("1e-3")


def test_a_closed_output_pipe_ends_quietly(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "toeplitz_conv", "spy", *TINY, "-o", str(tmp_path / "C.png")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # as `| head -0` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert err == ""


def test_verify_against_checks_output_padding_before_calling(capsys, monkeypatch):
    """--output-padding of a transposed --against layer is checked with the layer, naming the
    flags, before the user's callable is loaded or run."""
    monkeypatch.setattr(cli, "load_callable", lambda spec: pytest.fail("loaded before the check"))
    refused(capsys, ["verify", "--against", "torch.nn.functional:conv_transpose2d", "--transposed",
                     "--input", "2x5x5", "--kernel", "2x3x3x3", "--stride", "2", "--output-padding", "5"],
            "arguments --input 2x5x5 --kernel 2x3x3x3 --stride 2 --output-padding 5",
            "output_padding must be smaller than either stride or dilation")
