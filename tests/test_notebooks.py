"""Every notebooks/*.ipynb runs top to bottom (nbclient), in a temporary working folder."""

from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_numbered_notebooks():
    names = [p.name for p in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_"):
        assert any(n.startswith(prefix) for n in names), f"no notebook {prefix}*.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: strip outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, tmp_path_factory, monkeypatch):
    from jupyter_client.manager import KernelManager

    nb = nbformat.read(path, as_version=4)
    # figures are built but not rendered (rendering is tested in test_plot.py): the kernel
    # inherits this environment, and ipykernel leaves an explicit MPLBACKEND alone
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # unix sockets, not TCP ports: no port races with other kernels started at the same time
    sockets = tmp_path_factory.mktemp("kernel-ipc") / "kernel"
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(sockets))
    client = nbclient.NotebookClient(nb, km=km, timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on failure
    assert not list(tmp_path.iterdir())  # a lesson writes no files
