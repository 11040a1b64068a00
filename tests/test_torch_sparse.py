"""torch.sparse path: ToeplitzConvNd against nn.ConvNd (values and gradients), gradcheck,
training, state_dict, convert, and every error message."""

import pytest

torch = pytest.importorskip("torch")
import numpy as np  # noqa: E402
import torch.nn as nn  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from toeplitz_conv.torch_sparse import runtime  # noqa: E402
from toeplitz_conv.torch_sparse.structure import cached_structure  # noqa: E402

CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TWINS = {1: tc.ToeplitzConv1d, 2: tc.ToeplitzConv2d, 3: tc.ToeplitzConv3d}
MODES = ["zeros", "reflect", "replicate", "circular"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

# (ndim, C_in, C_out, kernel, stride, padding, dilation, groups, input spatial)
GEOMETRIES = {
    "1d-basic": (1, 3, 4, 3, 1, 1, 1, 1, (11,)),
    "1d-stride-dil": (1, 4, 6, 3, 2, 2, 2, 2, (13,)),
    "2d-1x1": (2, 3, 5, 1, 1, 0, 1, 1, (5, 6)),
    "2d-kernel=input": (2, 2, 3, (4, 5), 1, 0, 1, 1, (4, 5)),
    "2d-stride>kernel": (2, 3, 4, 2, 3, 1, 1, 1, (10, 9)),
    "2d-dilation+pad": (2, 4, 4, 3, 1, 2, 2, 1, (9, 8)),
    "2d-depthwise": (2, 4, 8, 3, 1, 1, 1, 4, (7, 7)),
    "2d-bsr-tiles": (2, 16, 8, 3, 2, 1, 1, 1, (7, 6)),
    "2d-same": (2, 3, 4, (3, 4), 1, "same", 1, 1, (8, 7)),
    "3d": (3, 2, 4, (2, 3, 2), (1, 2, 1), 1, 1, 2, (4, 5, 4)),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tiny products are all overhead, and on a busy machine
    OpenMP barriers between two threads cost milliseconds per call (speed lives in benchmarks/)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(ndim, cin, cout, k, s, p, d, groups, mode, layout="auto", bias=True):
    torch.manual_seed(0)
    conv = CONVS[ndim](cin, cout, k, stride=s, padding=p, dilation=d, groups=groups, bias=bias,
                       padding_mode=mode).double()
    return conv, TWINS[ndim].from_conv(conv, sparse_layout=layout)


def _fits(spatial, p, mode):
    return mode not in ("reflect", "circular") or isinstance(p, str) or all(p < n for n in spatial)


def _grads_match(conv, twin, x):
    """Output, input, weight and bias gradients of ``twin`` equal those of ``conv``."""
    y_ref, y = conv(x), twin(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
    delta = torch.randn_like(y_ref)
    ref = torch.autograd.grad(y_ref, (x, conv.weight, conv.bias), delta)
    got = torch.autograd.grad(y, (x, twin.weight, twin.bias), delta)
    for a, b, what in zip(got, ref, ("input", "weight", "bias")):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"{what} gradient")


FORCED = ["1d-stride-dil", "2d-stride>kernel", "2d-depthwise", "2d-bsr-tiles", "3d"]
CASES = [(name, "auto") for name in GEOMETRIES] + [(n, lay) for n in FORCED for lay in ("csr", "bsr")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, layout", CASES, ids=[f"{n}-{lay}" for n, lay in CASES])
@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_matches_torch_conv(name, mode, layout):
    ndim, cin, cout, k, s, p, d, groups, spatial = GEOMETRIES[name]
    if not _fits(spatial, p, mode) or (p == "same" and mode != "zeros" and ndim > 2):
        pytest.skip("padding too large for this mode")
    conv, twin = _pair(ndim, cin, cout, k, s, p, d, groups, mode, layout)
    _grads_match(conv, twin, torch.randn(3, cin, *spatial, dtype=torch.float64, requires_grad=True))


@pytest.mark.parametrize("layout, groups, mode", [("csr", 1, "zeros"), ("csr", 2, "reflect"),
                                                   ("bsr", 1, "zeros"), ("bsr", 2, "circular")])
def test_many_chunks_and_blocks_match_torch(monkeypatch, layout, groups, mode):
    """Wide activations (several transpose blocks) and a weight gradient gathered in many
    chunks, the last one short, agree with nn.Conv2d."""
    monkeypatch.setattr(runtime, "_GATHER_CHUNK_BYTES", 3 * 1024)
    monkeypatch.setattr(runtime, "_TRANSPOSE_BLOCK", 700)
    cached_structure.cache_clear()
    conv, twin = _pair(2, 8, 8, 3, 1, 1, 1, groups, mode, layout)
    _grads_match(conv, twin, torch.randn(3, 8, 17, 19, dtype=torch.float64, requires_grad=True))
    (values,) = twin._values.values()
    assert values.structure.layout == layout
    cached_structure.cache_clear()


@pytest.mark.parametrize("mode", ["zeros", "circular"])
@pytest.mark.parametrize("name", ["1d-stride-dil", "2d-depthwise", "2d-bsr-tiles", "3d"])
def test_cuda_policy_on_cpu_tensors_matches_torch(monkeypatch, name, mode):
    """The choices the CUDA path makes (CSR for 'auto', the bias added after the product,
    one-copy transposes, 64 MiB gather chunks, no kept scratch) run here on CPU tensors:
    everything CUDA executes except cuSPARSE's kernels themselves."""
    cuda = runtime.policy(torch.device("cuda"))
    assert cuda != runtime.policy(torch.device("cpu"))
    monkeypatch.setattr(runtime, "policy", lambda device: cuda)
    cached_structure.cache_clear()
    ndim, cin, cout, k, s, p, d, groups, spatial = GEOMETRIES[name]
    conv, twin = _pair(ndim, cin, cout, k, s, p, d, groups, mode)
    _grads_match(conv, twin, torch.randn(3, cin, *spatial, dtype=torch.float64, requires_grad=True))
    (values,) = twin._values.values()
    assert values.structure.policy is cuda and values.structure.layout == "csr"
    cached_structure.cache_clear()


def test_gather_scratch_follows_batch_and_dtype():
    """The thread's kept scratch buffers (the weight gradient's gather among them) grow with
    the batch and follow the dtype."""
    conv, twin = _pair(2, 3, 4, 3, 1, 1, 1, 1, "zeros")
    for n in (2, 5, 1, 5):
        _grads_match(conv, twin, torch.randn(n, 3, 6, 7, dtype=torch.float64, requires_grad=True))
    conv.float(), twin.float()
    x = torch.randn(4, 3, 6, 7, requires_grad=True)
    y = twin(x)
    gw = torch.autograd.grad(y, twin.weight, torch.ones_like(y))[0]
    ref = torch.autograd.grad(conv(x), conv.weight, torch.ones_like(y))[0]
    assert gw.dtype == torch.float32
    torch.testing.assert_close(gw, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["csr", "bsr"])
def test_results_never_alias_the_kept_scratch_buffers(monkeypatch, layout):
    """Outputs and gradients are new tensors: a later call, which reuses the thread's scratch
    buffers, leaves earlier results as they were; buffers over the cap are not kept."""
    conv, twin = _pair(2, 8, 8, 3, 1, 1, 1, 1, "zeros", layout)
    xs = [torch.randn(3, 8, 6, 6, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    outs = [twin(x) for x in xs]
    grads = [torch.autograd.grad(y, (x, twin.weight), torch.ones_like(y)) for x, y in zip(xs, outs)]
    for x, y, (gx, gw) in zip(xs, outs, grads):
        y_ref = conv(x)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-10)
        ref = torch.autograd.grad(y_ref, (x, conv.weight), torch.ones_like(y_ref))
        torch.testing.assert_close(gx, ref[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(gw, ref[1], rtol=0, atol=1e-10)
    kept = {b.untyped_storage().data_ptr() for b in runtime._POOL.buffers.values()}
    assert kept and kept.isdisjoint(t.untyped_storage().data_ptr() for t in (*outs, *grads[0]))
    monkeypatch.setattr(runtime, "_SCRATCH_MAX_BYTES", 1024)
    runtime._POOL.buffers.clear()
    _grads_match(conv, twin, torch.randn(3, 8, 6, 6, dtype=torch.float64, requires_grad=True))
    assert all(b.numel() * b.element_size() <= 1024 for b in runtime._POOL.buffers.values())


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_csr_is_the_public_matrix(mode):
    """On CSR the torch path stores conv_matrix itself (channel-first order) and its
    transpose, with int32 indices."""
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    g = tc.conv_geometry(tuple(w.shape), (4, 7, 8), padding=2, groups=2, padding_mode=mode)
    s = cached_structure(g, torch.device("cpu"), "csr")
    C, CT = s.matrix(w), s.matrix(w, transpose=True)
    ref = tc.conv_matrix(w.numpy(), (4, 7, 8), padding=2, groups=2, padding_mode=mode)
    assert C.crow_indices().dtype == torch.int32 and CT.col_indices().dtype == torch.int32
    np.testing.assert_array_equal(C.crow_indices().numpy(), ref.indptr)
    np.testing.assert_array_equal(C.col_indices().numpy(), ref.indices)
    np.testing.assert_allclose(C.values().numpy(), ref.data, rtol=0, atol=1e-14)
    np.testing.assert_allclose(CT.to_dense().numpy(), ref.T.toarray(), rtol=0, atol=1e-14)


def test_unbatched_input_and_no_bias():
    conv, twin = _pair(2, 3, 4, 3, 1, 1, 1, 1, "reflect", bias=False)
    x = torch.randn(3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(twin(x), conv(x), rtol=0, atol=1e-10)
    assert twin(x).shape == (4, 6, 6)


def test_gradcheck_functional_all_modes():
    for mode, groups in zip(MODES, (1, 2, 1, 2)):
        x = torch.randn(2, 2, 4, 3, dtype=torch.float64, requires_grad=True)
        w = torch.randn(2, 2 // groups, 3, 2, dtype=torch.float64, requires_grad=True)
        b = torch.randn(2, dtype=torch.float64, requires_grad=True)

        def f(x, w, b):
            return tc.sparse_conv(x, w, b, stride=(2, 1), padding=1, groups=groups,
                                    padding_mode=mode)

        assert torch.autograd.gradcheck(f, (x, w, b))


def test_gradcheck_module_input_1d_and_3d():
    for ndim, spatial in ((1, (6,)), (3, (3, 3, 2))):
        _, twin = _pair(ndim, 2, 3, 2, 1, 1, 1, 1, "circular")
        x = torch.randn(1, 2, *spatial, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(twin, (x,))


def test_functional_matches_F_conv():
    x = torch.randn(2, 4, 9, 9)
    w = torch.randn(6, 2, 3, 3)
    y = tc.sparse_conv(x, w, None, 2, 1, 1, 2)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, w, None, 2, 1, 1, 2), rtol=1e-4, atol=1e-4)


def test_float32_follows_weight():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    twin = tc.ToeplitzConv2d.from_conv(conv)
    x = torch.randn(4, 8, 10, 10)
    y = twin(x)
    assert y.dtype == torch.float32 and y.is_contiguous()
    torch.testing.assert_close(y, conv(x), rtol=1e-4, atol=1e-4)


def test_values_refresh_after_optimizer_step_and_structure_built_once():
    conv, twin = _pair(2, 8, 8, 3, 1, 1, 1, 1, "zeros")  # 8 x 8 tiles: BSR on the CPU
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    twin(x).sum().backward()
    (values,) = twin._values.values()
    assert values.structure.layout == "bsr"
    opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    opt.step()
    with torch.no_grad():
        conv.weight.copy_(twin.weight)
        conv.bias.copy_(twin.bias)
    torch.testing.assert_close(twin(x), conv(x), rtol=0, atol=1e-10)
    assert list(twin._values.values()) == [values]  # same structure, new values
    twin.weight.data.mul_(2)  # bypasses the version counter: refresh() is the documented way
    twin.refresh()
    with torch.no_grad():
        conv.weight.mul_(2)
    torch.testing.assert_close(twin(x), conv(x), rtol=0, atol=1e-10)
    twin(torch.randn(2, 8, 5, 7, dtype=torch.float64))  # a new spatial size: a second structure
    assert len(twin._values) == 1 + 1


def test_structure_cached_per_geometry():
    x = torch.randn(1, 2, 6, 6)
    w = torch.randn(3, 2, 3, 3)
    tc.sparse_conv(x, w, padding=1)
    hits = cached_structure.cache_info().hits
    tc.sparse_conv(x, w * 2, padding=1)
    assert cached_structure.cache_info().hits == hits + 1


def test_state_dict_round_trip_and_repr():
    conv, twin = _pair(2, 3, 4, 3, 2, 1, 1, 1, "replicate")
    assert twin.state_dict().keys() == conv.state_dict().keys()
    fresh = tc.ToeplitzConv2d(3, 4, 3, stride=2, padding=1, padding_mode="replicate").double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    fresh(x)  # values cached for the old weights must not survive load_state_dict
    fresh.load_state_dict(conv.state_dict())
    torch.testing.assert_close(fresh(x), conv(x), rtol=0, atol=1e-10)
    back = nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="replicate").double()
    back.load_state_dict(fresh.state_dict())
    torch.testing.assert_close(back(x), conv(x), rtol=0, atol=0)
    assert "sparse_layout='auto'" in repr(fresh)


def test_deepcopy_and_pickle():
    import copy
    import pickle

    conv, twin = _pair(2, 8, 8, 3, 1, 1, 1, 1, "zeros")
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    twin(x)  # caches sparse tensors, which torch cannot deepcopy
    for clone in (copy.deepcopy(twin), pickle.loads(pickle.dumps(twin))):
        torch.testing.assert_close(clone(x), conv(x), rtol=0, atol=1e-10)
    assert len(twin._values) == 1


def test_to_dtype_rebuilds():
    conv, twin = _pair(2, 3, 4, 3, 1, 1, 1, 1, "zeros")
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    twin(x)
    ref = conv(x).float()
    twin.float()  # the shared parameters are converted (conv's too)
    assert conv.weight.dtype == torch.float32
    torch.testing.assert_close(twin(x.float()), ref, rtol=1e-5, atol=1e-5)


def _small_net():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 4, 3, stride=2, groups=4)), nn.Flatten(), nn.Linear(4 * 2 * 2, 3),
    )


def test_convert_swaps_and_keeps_weights():
    torch.manual_seed(0)
    net = _small_net()
    x = torch.randn(4, 1, 12, 12)
    ref = net(x)
    tnet = tc.convert(_small_net_copy(net))
    kinds = [type(m).__name__ for m in tnet.modules() if isinstance(m, nn.Conv2d)]
    assert kinds == ["ToeplitzConv2d"] * 3
    torch.testing.assert_close(tnet(x), ref, rtol=1e-5, atol=1e-5)
    one = tc.convert(nn.Conv1d(2, 3, 3))
    assert type(one) is tc.ToeplitzConv1d
    assert tc.convert(tnet) is tnet  # already converted: nothing to do


def _small_net_copy(net):
    copy = _small_net()
    copy.load_state_dict(net.state_dict())
    return copy


def test_converted_model_trains_like_the_original():
    torch.manual_seed(1)
    ref = _small_net().double()
    net = tc.convert(_small_net_copy(ref).double())
    x = torch.randn(16, 1, 12, 12, dtype=torch.float64)
    target = torch.randint(0, 3, (16,))
    losses = {}
    for name, model in (("torch", ref), ("toeplitz", net)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        losses[name] = []
        for _ in range(8):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), target)
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    np.testing.assert_allclose(losses["toeplitz"], losses["torch"], rtol=1e-9)
    assert losses["torch"][-1] < losses["torch"][0]


def test_to_torch_sparse_csr_and_coo():
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    C = tc.conv_matrix(w, (2, 6, 5), padding=1, padding_mode="circular")
    x = torch.randn(C.shape[1], 2, dtype=torch.float64)
    for layout in ("csr", "coo"):
        T = tc.to_torch_sparse(C, layout=layout)
        assert T.layout == {"csr": torch.sparse_csr, "coo": torch.sparse_coo}[layout]
        torch.testing.assert_close(T @ x, torch.from_numpy(C @ x.numpy()))
    T32 = tc.to_torch_sparse(C.tocoo(), dtype=torch.float32, device="cpu")
    assert T32.dtype == torch.float32 and T32.device.type == "cpu"


# --------------------------------------------------------------------------- CUDA


@needs_cuda
@pytest.mark.parametrize("layout", ["auto", "csr"])
def test_cuda_matches_cudnn(layout):
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1).double().cuda()
    twin = tc.ToeplitzConv2d.from_conv(conv, sparse_layout=layout)
    x = torch.randn(4, 8, 12, 12, dtype=torch.float64, device="cuda", requires_grad=True)
    torch.testing.assert_close(twin(x), conv(x), rtol=0, atol=1e-10)
    ref = torch.autograd.grad(conv(x).sum(), (x, conv.weight, conv.bias))
    got = torch.autograd.grad(twin(x).sum(), (x, twin.weight, twin.bias))
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@needs_cuda
def test_cuda_to_device_and_to_torch_sparse():
    conv, twin = _pair(2, 3, 4, 3, 1, 1, 1, 1, "circular")
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    ref = conv(x)
    twin.cuda()
    torch.testing.assert_close(twin(x.cuda()).cpu(), ref, rtol=0, atol=1e-10)
    T = tc.to_torch_sparse(tc.conv_matrix(np.ones((2, 1, 3, 3)), (1, 5, 5)), device="cuda")
    assert T.device.type == "cuda"


# --------------------------------------------------------------------------- errors


def test_error_wrong_channel_count():
    twin = tc.ToeplitzConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"must have 3 channels \(in_channels\), on axis 1; got input.shape=\(2, 5, 8, 8\)"):
        twin(torch.randn(2, 5, 8, 8))
    with pytest.raises(ValueError, match=r"on axis 0; got input.shape=\(5, 8, 8\)"):
        twin(torch.randn(5, 8, 8))


def test_error_wrong_rank():
    twin = tc.ToeplitzConv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"ToeplitzConv2d must have shape \(N, C_in, H, W\) or \(C_in, H, W\).*got input.shape=\(3, 8\) \(2D\)"):
        twin(torch.randn(3, 8))
    with pytest.raises(ValueError, match=r"ToeplitzConv1d must have shape \(N, C_in, W\)"):
        tc.ToeplitzConv1d(3, 4, 3)(torch.randn(1, 1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"weight must have 3, 4 or 5 dimensions.*got weight.shape=\(4, 3\)"):
        tc.sparse_conv(torch.randn(2, 3, 5), torch.randn(4, 3))


def test_error_input_too_small_is_the_core_message():
    with pytest.raises(ValueError, match="the output would be empty"):
        tc.ToeplitzConv2d(1, 1, 5)(torch.randn(1, 1, 3, 3))


def test_error_not_a_tensor():
    with pytest.raises(TypeError, match=r"input of ToeplitzConv2d must be a torch.Tensor; got ndarray"):
        tc.ToeplitzConv2d(1, 1, 3)(np.zeros((1, 1, 5, 5)))
    with pytest.raises(TypeError, match=r"weight must be a torch.Tensor; got list"):
        tc.sparse_conv(torch.zeros(1, 1, 5), [[[1.0]]])


def test_error_devices_differ():
    twin = tc.ToeplitzConv2d(1, 2, 3).to("meta")
    with pytest.raises(ValueError, match=r"input and weight of ToeplitzConv2d must be on the same device; got input on cpu and weight on meta"):
        twin(torch.randn(1, 1, 5, 5))
    w = torch.randn(2, 1, 3)
    with pytest.raises(ValueError, match=r"input and bias of sparse_conv \(1D\) must be on the same device; got input on cpu and bias on meta"):
        tc.sparse_conv(torch.randn(1, 1, 5), w, torch.zeros(2, device="meta"))


def test_error_unsupported_device():
    twin = tc.ToeplitzConv2d(1, 2, 3).to("meta")
    with pytest.raises(ValueError, match=r"runs on 'cpu' or 'cuda' \(torch.sparse products\); got tensors on meta"):
        twin(torch.randn(1, 1, 5, 5, device="meta"))


@needs_cuda
def test_error_devices_differ_cuda():
    twin = tc.ToeplitzConv2d(1, 2, 3).cuda()
    with pytest.raises(ValueError, match=r"got input on cpu and weight on cuda"):
        twin(torch.randn(1, 1, 5, 5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_error_dtype_torch_sparse_cannot_multiply(dtype):
    twin = tc.ToeplitzConv2d(1, 2, 3).to(dtype)
    with pytest.raises(TypeError, match=rf"weight of ToeplitzConv2d must be float32 or float64.*got {dtype}"):
        twin(torch.randn(1, 1, 5, 5, dtype=dtype))


def test_error_input_dtype_differs():
    twin = tc.ToeplitzConv2d(1, 2, 3)
    with pytest.raises(TypeError, match=r"input of ToeplitzConv2d must have the weight's dtype torch.float32; got torch.float64"):
        twin(torch.randn(1, 1, 5, 5, dtype=torch.float64))


def test_error_unsupported_layouts():
    C = tc.conv_matrix(np.ones((1, 1, 3)), (1, 5))
    with pytest.raises(ValueError, match=r"layout must be one of 'csr', 'coo' \(torch.sparse layouts supported here\); got 'bsc'"):
        tc.to_torch_sparse(C, layout="bsc")
    with pytest.raises(ValueError, match=r"sparse_layout must be one of 'auto', 'csr', 'bsr'.*got 'coo'"):
        tc.ToeplitzConv2d(1, 1, 3, sparse_layout="coo")
    with pytest.raises(ValueError, match=r"sparse_layout must be one of .*got 'dense'"):
        tc.sparse_conv(torch.zeros(1, 1, 5), torch.ones(1, 1, 3), sparse_layout="dense")
    with pytest.raises(ValueError, match=r"sparse_layout must be one of .*got 'csc'"):
        tc.convert(nn.Conv2d(1, 1, 3), sparse_layout="csc")


def test_error_to_torch_sparse_arguments():
    with pytest.raises(TypeError, match=r"C must be a scipy.sparse array or matrix.*got ndarray"):
        tc.to_torch_sparse(np.eye(3))
    C = tc.conv_matrix(np.ones((1, 1, 3)), (1, 5))
    with pytest.raises(TypeError, match=r"dtype must be a torch.dtype such as torch.float32; got 'float32'"):
        tc.to_torch_sparse(C, dtype="float32")


def test_error_from_conv_and_convert_arguments():
    with pytest.raises(TypeError, match=r"ToeplitzConv2d.from_conv needs an nn.Conv2d; got Conv1d"):
        tc.ToeplitzConv2d.from_conv(nn.Conv1d(1, 1, 3))
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module; got str"):
        tc.convert("resnet")


def test_error_matrix_too_large():
    tc.set_memory_limit(2_000_000)  # the core's index table fits, C and C.T do not
    try:
        with pytest.raises(ValueError, match=r"the torch.sparse matrices of this 2D convolution would need about"):
            tc.ToeplitzConv2d(4, 4, 3, padding=1)(torch.randn(1, 4, 31, 29))
    finally:
        tc.set_memory_limit(None)
