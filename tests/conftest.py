import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _torch_single_thread():
    """The tests run many tiny convolutions: torch's thread pool only adds overhead to them
    (about 10x on a 2-core machine). Speed is measured in benchmarks/, not here."""
    try:
        import torch
    except ImportError:  # the scipy core is tested without torch too
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def float64():
    """torch's default dtype float64 for one test (``pytestmark = usefixtures("float64")``)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
