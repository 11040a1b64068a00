"""The HTML explorer's file: one self-contained page (nothing fetched), the layer's matrix as
``conv_matrix`` builds it, a network's layers with the ones too large refused by size, and the
argument errors. What the page does in a browser is tested in test_explorer_browser.py."""

import html
import json
import re

import numpy as np
import pytest

import toeplitz_conv as tc
from toeplitz_conv.plot.explorer import EXPLORER_MAX_NONZEROS


def _data(path):
    """The page's data: the JSON the script is given."""
    text = path.read_text()
    return json.loads(re.search(r"const D = (.*);\n", text).group(1).replace("<\\/", "</"))


def test_explore_writes_one_self_contained_file(tmp_path):
    out = tc.explore(np.ones((2, 1, 3, 3)), (1, 5, 5), stride=2, padding=1, padding_mode="reflect",
                     path=tmp_path / "layer.html")
    raw = out.read_text()
    text = html.unescape(raw)
    assert "<script src" not in text and "http" not in text.split("<body>")[1]  # no network
    for external in ("http:", "https:", "//cdn", "src=", "<link", "@import", "url(", "@font-face"):
        assert external not in raw, external
    assert raw.count("<script>") == 1 and raw.count("<style>") == 1
    assert "Conv2d(1, 2, 3, stride=2, padding=1, padding_mode='reflect') on 1x5x5" in text
    with pytest.raises(ValueError, match=r"explore is for small layers \(at most 4,096 input and output entries"):
        tc.explore(np.ones((1, 1, 3, 3)), (1, 80, 80), path=tmp_path / "big.html")


def test_the_page_holds_conv_matrix_and_the_geometry(tmp_path):
    w = np.random.default_rng(0).standard_normal((4, 1, 3, 2))
    kw = dict(padding="same", dilation=(2, 1), groups=2, padding_mode="circular")
    D = _data(tc.explore(w, (2, 6, 5), path=tmp_path / "layer.html", **kw))
    (L,) = D["layers"]
    C = tc.conv_matrix(w, (2, 6, 5), **kw).tocsr()
    C.sum_duplicates()
    assert L["indptr"] == C.indptr.tolist() and L["indices"] == C.indices.tolist()
    np.testing.assert_allclose(L["data"], C.data, rtol=0, atol=0)
    G = L["conv"]
    assert G["pad_lo"] != G["pad_hi"]  # 'same' with an even kernel: per side, as the geometry says
    assert (G["groups"], G["mode"], G["wshape"], len(G["weight"])) == (2, "circular", [4, 1, 3, 2], w.size)
    assert D["first"] == 0 and D["limit"] == 4096 and L["refused"] is None


def test_explore_refuses_a_layer_with_too_many_nonzeros(tmp_path):
    # 64 x 64 outputs, each reading 64 channels x 9 taps less the padded ones: 64 * 484 * 64 nonzeros
    with pytest.raises(ValueError, match=rf"at most {EXPLORER_MAX_NONZEROS:,} nonzeros in C.*got 1,982,464 nonzeros"):
        tc.explore(np.ones((64, 64, 3, 3)), (64, 8, 8), padding=1, path=tmp_path / "big.html")
    assert not (tmp_path / "big.html").exists()


@pytest.mark.parametrize("kw,match", [
    (dict(layer=0), r"layer picks a node of a Network; with weights leave it out; got layer=0"),
    (dict(input_shape=None), r"input_shape is required with weights.*got None"),
    (dict(title=3), r"title must be a str or None; got int"),
    (dict(path=3), r"path must be a str or os.PathLike; got int"),
])
def test_explore_argument_errors(tmp_path, kw, match):
    args = dict(input_shape=(1, 5, 5), path=tmp_path / "x.html") | kw
    with pytest.raises(TypeError, match=match):
        tc.explore(np.ones((1, 1, 3, 3)), **args)


def _network(big=72):
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, big, 1), nn.AvgPool2d(2),
                          nn.Conv2d(big, 2, 1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 5)).double().eval()
    return tc.compile(model, (1, 8, 8))


def test_explore_a_network_lists_every_layer_with_a_matrix(tmp_path):
    net = _network()
    net.layers[4].matrix  # built before: kept; the others are released after
    D = _data(tc.explore(net, path=tmp_path / "net.html"))
    names = [L["name"] for L in D["layers"]]
    assert names == [net.layers[k].name for k in (0, 2, 3, 4, 5, 7)]  # not ReLU, not Flatten
    refused = {L["name"]: L["refused"] for L in D["layers"] if L["refused"]}
    assert set(refused) == {names[1], names[2], names[4]}
    assert "too large: 128 inputs and 4,608 outputs (at most 4,096 each" in refused[names[1]]
    assert "4,608 inputs" in refused[names[2]]
    assert "max pooling" in refused[names[4]] and "net.forward(x)" in refused[names[4]]
    for L, k in zip([L for L in D["layers"] if not L["refused"]], (0, 4, 7)):
        C = net.layers[k].matrix.tocsr()
        assert L["indices"] == C.indices.tolist() and (L["m"], L["n"]) == C.shape
        assert (L["conv"] is not None) == (k in (0, 4))
    assert [net.layers[k].built for k in (0, 4, 7)] == [True, True, True]  # read again just above
    net.release()
    tc.explore(net, path=tmp_path / "net.html")
    assert not any(layer.built for layer in net.layers if hasattr(layer, "built"))  # released after
    net.forward(np.random.default_rng(0).standard_normal((2, 1, 8, 8)))  # now max pooling has a matrix
    D = _data(tc.explore(net, layer="5", path=tmp_path / "net.html"))
    pool = D["layers"][D["first"]]
    assert pool["name"] == net.layers[5].name and pool["refused"] is None
    assert pool["indices"] == net.layers[5].matrix[0].tocsr().indices.tolist()
    assert "Network 1x8x8 -> 5: 4 of 6 layers with a matrix shown" in html.unescape((tmp_path / "net.html").read_text())


def test_explore_network_errors(tmp_path):
    net = _network()
    with pytest.raises(TypeError, match=r"a Network's nodes have their own: leave them out; got input_shape=\(1, 8, 8\), stride=2"):
        tc.explore(net, (1, 8, 8), stride=2, path=tmp_path / "net.html")
    with pytest.raises(ValueError, match=r"layer must be a node the explorer shows \('0', '4', '7'\); got layer=2: "
                                         r"Conv2d too large"):
        tc.explore(net, layer=2, path=tmp_path / "net.html")
    with pytest.raises(ValueError, match=r"got layer=1: it has no matrix to draw"):
        tc.explore(net, layer=1, path=tmp_path / "net.html")
    with pytest.raises(ValueError, match=r"layer must name a node of the network"):
        tc.explore(net, layer="nope", path=tmp_path / "net.html")
    with pytest.raises(TypeError, match=r"layer must be a node name or an index into network.layers; got float"):
        tc.explore(net, layer=1.0, path=tmp_path / "net.html")
    torch = pytest.importorskip("torch")
    big = tc.compile(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU()).double(), (1, 50, 50))
    with pytest.raises(ValueError, match=r"explore found no layer of the network it can show \(0: Conv2d too large: "
                                         r"2,500 inputs and 5,000 outputs"):
        tc.explore(big, path=tmp_path / "net.html")
