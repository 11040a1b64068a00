"""Write the teaching notebooks notebooks/01..05 (outputs stripped) from the cells below.

    python scripts/make_notebooks.py

The cells here are the source of the notebooks: edit them here and re-run, so the notebooks
stay reviewable in git (deterministic cell ids, no outputs). The tests execute every
notebooks/*.ipynb (tests/test_notebooks.py).
"""

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

SETUP = """\
import numpy as np
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
import toeplitz_conv as tc

torch.set_default_dtype(torch.float64)
np.set_printoptions(precision=3, suppress=True, linewidth=130)
rng = np.random.default_rng(0)"""

NOTEBOOKS = {}

# --------------------------------------------------------------------------- 01
NOTEBOOKS["01_1d_toeplitz"] = [
    ("md", """\
# 01 · A 1D convolution is a Toeplitz matrix

A convolution layer computes (PyTorch's convention, a *cross-correlation*: no kernel flip)

$$y[o] = \\sum_k w[k]\\, x[o + k].$$

Every output is a fixed linear combination of inputs, so $y = C\\,x$ for a matrix $C$. Row
$o$ of $C$ is the kernel placed at position $o$: each row is the row above shifted one step
to the right. A matrix that is constant along its diagonals is a **Toeplitz** matrix."""),
    ("code", SETUP),
    ("code", """\
w = np.array([1.0, 2.0, 3.0])
x = np.arange(1.0, 9.0)                      # 8 inputs
C = tc.conv_matrix(w[None, None], (1, 8))    # weight (C_out, C_in, k), input (C_in, L)
print(C.shape)
print(C.toarray())"""),
    ("md", "The product is the layer: check it against `torch.nn.functional.conv1d`."),
    ("code", """\
y = C @ x
y_torch = F.conv1d(torch.tensor(x)[None, None], torch.tensor(w)[None, None]).numpy().ravel()
print(y, y_torch)
assert np.allclose(y, y_torch)"""),
    ("md", """\
**Toeplitz**: `C[i, j]` depends only on `j - i`. SciPy builds convolution matrices too, for a
*true* convolution (kernel flipped): with the kernel reversed it is the same matrix."""),
    ("code", """\
import scipy.linalg

D = C.toarray()
for i in range(D.shape[0] - 1):
    assert np.array_equal(D[i, :-1], D[i + 1, 1:])   # each row is the previous one shifted
assert np.array_equal(D, scipy.linalg.convolution_matrix(w[::-1], 8, mode="valid"))"""),
    ("md", """\
## The kernel as symbols

With the weights as symbols the pattern is plain to read (sympy; in a notebook it prints as
LaTeX)."""),
    ("code", "tc.symbolic_conv_matrix((1, 1, 3), (1, 6))"),
    ("md", """\
## Stride, padding, circular padding

* **stride** $s$ keeps every $s$-th row;
* **zero padding** adds rows whose kernel hangs over the edge (the entries that would read
  padding are simply absent);
* **circular padding** wraps those entries around: with `padding=1` the matrix becomes
  *circulant* (each row a cyclic shift of the one above)."""),
    ("code", """\
x12 = rng.standard_normal(12)
layers = {
    "stride 2": dict(stride=2),
    "zero padding 1": dict(padding=1),
    "circular padding 1": dict(padding=1, padding_mode="circular"),
}
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
for ax, (name, opts) in zip(axes, layers.items()):
    Ck = tc.conv_matrix(w[None, None], (1, 12), **opts)
    tc.spy(Ck, ax=ax, colorbar=False, title=f"{name}: {Ck.shape[0]} x {Ck.shape[1]}")
    conv = torch.nn.Conv1d(1, 1, 3, bias=False, **opts)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(w)[None, None])
    assert np.allclose(Ck @ x12, conv(torch.tensor(x12)[None, None]).detach().numpy().ravel())"""),
    ("code", """\
Cc = tc.conv_matrix(w[None, None], (1, 12), padding=1, padding_mode="circular").toarray()
assert np.array_equal(Cc, scipy.linalg.circulant(Cc[:, 0]))   # circulant
print(Cc[:3].astype(int))"""),
    ("md", """\
**Takeaway.** A 1D convolution is multiplication by a banded Toeplitz matrix whose diagonals
hold the kernel; stride drops rows, zero padding clips the band at the edges, circular
padding wraps it into a circulant."""),
]

# --------------------------------------------------------------------------- 02
NOTEBOOKS["02_2d_doubly_block_toeplitz"] = [
    ("md", """\
# 02 · 2D convolution: a doubly block Toeplitz matrix

Flatten the image row by row (C order: channel, then height, then width). A 3x3 kernel on a
4x4 image gives a 2x2 output, so $C$ is 4 x 16 — the example drawn in Dumoulin & Visin's
*guide to convolution arithmetic*."""),
    ("code", SETUP),
    ("code", """\
M = tc.symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4))
M"""),
    ("code", """\
tc.symbolic_figure(M, title="3x3 kernel on a 4x4 image: C is 4 x 16");"""),
    ("md", """\
Cut $C$ into blocks of 4 columns (one image row each) and 2 rows (one output row each). Each
block is a 1D Toeplitz matrix made from one kernel row, and the blocks themselves repeat
along block diagonals: a **doubly block Toeplitz** matrix. Check it on a larger, padded
example: a 3x3 kernel on a 5x5 image with `padding=1` (25 x 25, blocks of 5 x 5)."""),
    ("code", """\
w = rng.standard_normal((1, 1, 3, 3))
C = tc.conv_matrix(w, (1, 5, 5), padding=1).toarray()
B = C.reshape(5, 5, 5, 5).transpose(0, 2, 1, 3)          # B[I, J] = block (output row I, image row J)
for I in range(4):
    for J in range(4):
        assert np.array_equal(B[I, J], B[I + 1, J + 1])    # blocks constant along block diagonals
for I in range(5):
    for J in range(5):
        assert np.array_equal(B[I, J][:-1, :-1], B[I, J][1:, 1:])   # each block Toeplitz
assert np.array_equal(B[1, 0], tc.conv_matrix(w[:, :, 0, None], (1, 1, 5), padding=(0, 1)).toarray())
print("blocks: 5 x 5 of 5 x 5, doubly block Toeplitz")"""),
    ("md", """\
## Channels and stride in a spy plot

With channels, $C$ is a grid of such blocks, one per (output channel, input channel) pair.
The spy plot draws lines between channel blocks (dark) and between image rows (light); the
stride shows as the band stepping two columns per row."""),
    ("code", """\
w = rng.standard_normal((4, 3, 3, 3))
C = tc.conv_matrix(w, (3, 8, 8), stride=2, padding=1)
fig, ax = plt.subplots(figsize=(11, 4.5), layout="constrained")
tc.spy(C, ax=ax, input_shape=(3, 8, 8), output_shape=(4, 4, 4));"""),
    ("code", """\
x = rng.standard_normal((3, 8, 8))
y_torch = F.conv2d(torch.tensor(x)[None], torch.tensor(w), stride=2, padding=1)
assert np.allclose(C @ x.ravel(), y_torch.numpy().ravel())"""),
    ("md", """\
## Padding modes

`reflect`, `replicate` and `circular` padding are linear too: a padded position reads an
input pixel instead of a zero, so at the border several kernel taps land on the same column
and **add up**. The band near the edges shows it."""),
    ("code", """\
w = rng.standard_normal((1, 1, 3, 3))
x = rng.standard_normal((1, 6, 6))
fig, axes = plt.subplots(1, 4, figsize=(15, 4), layout="constrained")
for ax, mode in zip(axes, ["zeros", "reflect", "replicate", "circular"]):
    C = tc.conv_matrix(w, (1, 6, 6), padding=1, padding_mode=mode)
    tc.spy(C, ax=ax, input_shape=(1, 6, 6), output_shape=(1, 6, 6), colorbar=False,
           title=f"{mode}: {C.nnz} nonzeros")
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode=mode, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(w))
    assert np.allclose(C @ x.ravel(), conv(torch.tensor(x)[None]).detach().numpy().ravel())"""),
    ("md", """\
## What one output sees, where one input goes

A row of $C$ put back into the input's shape is the **receptive field** of one output; a
column put back into the output's shape is the **projective field** of one input."""),
    ("code", """\
w = rng.standard_normal((2, 2, 3, 3))
C = tc.conv_matrix(w, (2, 7, 7), stride=2, padding=1)
tc.field_figure(C, (2, 7, 7), (2, 4, 4), output_index=(0, 1, 2), input_index=(1, 3, 3));"""),
    ("md", """\
**Takeaway.** The 2D convolution matrix is block Toeplitz with Toeplitz blocks (per channel
pair); stride subsamples its rows, and every padding mode only changes which columns the
border rows read."""),
]

# --------------------------------------------------------------------------- 03
NOTEBOOKS["03_backward_is_transpose"] = [
    ("md", """\
# 03 · Backward is the transpose

For $y = C x$ and a loss $L(y)$, the chain rule gives
$\\partial L / \\partial x = C^\\top \\delta$ with $\\delta = \\partial L / \\partial y$.
So the input gradient of a convolution is multiplication by $C^\\top$ — and that is exactly
what PyTorch calls `conv_transpose2d`."""),
    ("code", SETUP),
    ("code", """\
w = torch.tensor(rng.standard_normal((4, 3, 3, 3)))
x = torch.tensor(rng.standard_normal((1, 3, 8, 8)), requires_grad=True)
y = F.conv2d(x, w, stride=2, padding=1)
delta = torch.tensor(rng.standard_normal(y.shape))
y.backward(delta)                                     # autograd: x.grad = dL/dx

C = tc.conv_matrix(w, (3, 8, 8), stride=2, padding=1)
dx = C.T @ delta.numpy().ravel()
dx_transposed_conv = F.conv_transpose2d(delta, w, stride=2, padding=1, output_padding=1)
assert np.allclose(dx, x.grad.numpy().ravel())
assert np.allclose(dx, dx_transposed_conv.numpy().ravel())
print("C.T @ delta == autograd's input gradient == conv_transpose2d:", C.T.shape)"""),
    ("md", """\
**The dot test** (an adjoint is defined by it): $\\langle C u, v\\rangle = \\langle u, C^\\top v\\rangle$
for all $u$, $v$."""),
    ("code", """\
u, v = rng.standard_normal(C.shape[1]), rng.standard_normal(C.shape[0])
print((C @ u) @ v, u @ (C.T @ v))
assert np.isclose((C @ u) @ v, u @ (C.T @ v))"""),
    ("md", """\
## Entry by entry, with symbols

The transposed convolution is usually *defined* as a scatter: each input entry adds the
kernel, scaled, into the output. Built that way (`symbolic_conv_transpose_matrix`, which does
not use the convolution's matrix), it equals $C^\\top$ symbol for symbol."""),
    ("code", """\
T = tc.symbolic_conv_transpose_matrix((1, 1, 3, 3), (1, 2, 2))
assert T == tc.symbolic_conv_matrix((1, 1, 3, 3), (1, 4, 4)).T
T.T      # shown transposed (4 x 16) to fit the page"""),
    ("md", """\
## Why `output_padding` exists

With stride 2, several input sizes give the same output size: a 3x3 kernel with padding 1
maps both 7x7 and 8x8 images to 4x4. The two matrices $C$ are 16 x 49 and 16 x 64, so
$C^\\top$ maps 16 values back to 49 or to 64. `conv_transpose2d` only sees the 4x4 input,
so it has to be told which: `output_padding` = 0 gives 7x7, 1 gives 8x8."""),
    ("code", """\
for n in (7, 8):
    print(n, "->", tc.conv_output_size((n, n), 3, stride=2, padding=1))
for a in (0, 1):
    print("output_padding", a, "->", tc.conv_transpose_output_size((4, 4), 3, stride=2, padding=1, output_padding=a))

w1 = torch.tensor(rng.standard_normal((1, 1, 3, 3)))
d = torch.tensor(rng.standard_normal((1, 1, 4, 4)))
for n, a in ((7, 0), (8, 1)):
    Cn = tc.conv_matrix(w1, (1, n, n), stride=2, padding=1)
    ref = F.conv_transpose2d(d, w1, stride=2, padding=1, output_padding=a)
    assert ref.shape[-1] == n and np.allclose(Cn.T @ d.numpy().ravel(), ref.numpy().ravel())"""),
    ("md", """\
## Where PyTorch stops, the transpose goes on

`ConvTranspose2d` supports zero padding only. The transpose of a reflect- or circular-padded
convolution is still just $C^\\top$ — and it is still autograd's input gradient."""),
    ("code", """\
conv = torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", bias=False)
x = torch.tensor(rng.standard_normal((1, 2, 6, 6)), requires_grad=True)
y = conv(x)
delta = torch.tensor(rng.standard_normal(y.shape))
y.backward(delta)
C = tc.conv_matrix(conv.weight, (2, 6, 6), padding=1, padding_mode="reflect")
assert np.allclose(C.T @ delta.numpy().ravel(), x.grad.numpy().ravel())

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
tc.spy(C, ax=axes[0], input_shape=(2, 6, 6), output_shape=(3, 6, 6), colorbar=False, title=f"C (reflect), {C.shape}")
tc.spy(C.T, ax=axes[1], input_shape=(3, 6, 6), output_shape=(2, 6, 6), colorbar=False, title=f"C.T, {C.T.shape}");"""),
    ("md", """\
**Takeaway.** Backpropagating through a convolution multiplies by $C^\\top$; a transposed
convolution *is* that product, and `output_padding` only picks which of the input sizes the
stride merged."""),
]

# --------------------------------------------------------------------------- 04
NOTEBOOKS["04_weight_gradient"] = [
    ("md", """\
# 04 · The weight gradient from the same structure

Every stored entry of $C$ is one kernel weight. The library keeps this as triples
`(row, col, tap)`:

$$C[\\text{row}, \\text{col}] \\mathrel{+}= W.\\text{flat}[\\text{tap}].$$

Since $L$ depends on $W$ only through these entries,

$$\\frac{\\partial L}{\\partial W.\\text{flat}[t]} = \\sum_{\\text{triples with tap } t} \\delta[\\text{row}]\\; x[\\text{col}].$$"""),
    ("code", SETUP),
    ("code", """\
w = rng.standard_normal((2, 3, 3, 3))
x = rng.standard_normal((3, 6, 6))
opts = dict(stride=2, padding=1)
g = tc.conv_geometry(w.shape, x.shape, **opts)
row, col, tap = tc.conv_pattern(g).triples()
print(len(tap), "triples; first five:", list(zip(row[:5], col[:5], tap[:5])))

C = tc.conv_matrix(w, x.shape, **opts)
delta = rng.standard_normal(C.shape[0])
dW = np.bincount(tap, weights=delta[row] * x.ravel()[col], minlength=w.size).reshape(w.shape)

wt = torch.tensor(w, requires_grad=True)
y = F.conv2d(torch.tensor(x)[None], wt, **opts)
y.backward(torch.tensor(delta).reshape(y.shape))
assert np.allclose(dW, wt.grad.numpy())
print("dL/dW from the triples == autograd")"""),
    ("md", """\
## im2col: the same triples read the other way

Put `tap` in the column instead of `col`: $J[\\text{row}, \\text{tap}] = x[\\text{col}]$.
Then $y = J\\, W.\\text{ravel}()$ — the convolution as a product with the weights (this is
**im2col**) — and the weight gradient is $J^\\top \\delta$, just as the input gradient was
$C^\\top \\delta$."""),
    ("code", """\
J = tc.conv_weight_jacobian(x, w.shape, **opts)
assert np.allclose(J @ w.ravel(), C @ x.ravel())
assert np.allclose(J.T @ delta, dW.ravel())
fig, axes = plt.subplots(1, 2, figsize=(13, 4), layout="constrained", width_ratios=[1.6, 1])
tc.spy(C, ax=axes[0], input_shape=x.shape, output_shape=g.out_shape, colorbar=False, title=f"C: y = C x, {C.shape}")
tc.spy(J, ax=axes[1], output_shape=g.out_shape, colorbar=False, title=f"J: y = J w, {J.shape}")
axes[1].set_xlabel("weight index (c_out, c_in, kh, kw)");"""),
    ("md", """\
For a batch, the gradients of the samples add up: `conv_weight_grad` takes `(N, C, H, W)`."""),
    ("code", """\
xb = torch.tensor(rng.standard_normal((5, 3, 6, 6)))
wt = torch.tensor(w, requires_grad=True)
yb = F.conv2d(xb, wt, **opts)
db = torch.tensor(rng.standard_normal(yb.shape))
yb.backward(db)
assert np.allclose(tc.conv_weight_grad(xb, db, w.shape, **opts), wt.grad.numpy())"""),
    ("md", """\
## The four panels

An image, an edge kernel and the loss $L = \\tfrac12\\|y\\|^2$ (so $\\delta = y$): the weight
gradient correlates the input with $\\delta$; the input gradient spreads $\\delta$ back
through $C^\\top$."""),
    ("code", """\
yy, xx = np.mgrid[0:16, 0:16]
img = ((xx - 7.5) ** 2 + (yy - 7.5) ** 2 < 30).astype(float)
sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
fig = tc.gradient_figure(img, sobel, padding=1)
a = fig.arrays
wt = torch.tensor(sobel[None, None], requires_grad=True)
xt = torch.tensor(img[None, None], requires_grad=True)
(0.5 * (F.conv2d(xt, wt, padding=1) ** 2).sum()).backward()
assert np.allclose(a["dW"], wt.grad.numpy()) and np.allclose(a["dx"], xt.grad.numpy()[0])"""),
    ("md", """\
## Learning a kernel is linear regression

Because $y = J w$ is linear in $w$, recovering an unknown kernel from one input/output pair
is a least-squares problem with the im2col matrix."""),
    ("code", """\
x = rng.standard_normal((1, 10, 10))
J = tc.conv_weight_jacobian(x, (1, 1, 3, 3))
y = tc.conv_matrix(sobel[None, None], x.shape) @ x.ravel()
w_hat, *_ = np.linalg.lstsq(J.toarray(), y, rcond=None)
print(w_hat.reshape(3, 3))
assert np.allclose(w_hat.reshape(3, 3), sobel)"""),
    ("md", """\
**Takeaway.** One set of triples gives $C$ (forward), $C^\\top$ (input gradient) and, read
with the tap as column, the im2col matrix $J$ whose transpose gives the weight gradient."""),
]

# --------------------------------------------------------------------------- 05
NOTEBOOKS["05_pooling_and_cnn_as_mlp"] = [
    ("md", """\
# 05 · Pooling, and a whole CNN as an MLP

Average pooling is a fixed matrix (each row averages one window). Max pooling is a 0/1
*selection* matrix that depends on the input (a 1 at each window's argmax): linear only for
that input. With these, every layer of a CNN is a matrix or an elementwise function — the
CNN is a multilayer perceptron with structured, sparse weight matrices."""),
    ("code", SETUP),
    ("code", """\
x = rng.standard_normal((2, 6, 6))
P = tc.avg_pool_matrix((2, 6, 6), 2)
S = tc.max_pool_matrix(x, 2)
assert np.allclose(P @ x.ravel(), F.avg_pool2d(torch.tensor(x)[None], 2).numpy().ravel())
assert np.allclose(S @ x.ravel(), F.max_pool2d(torch.tensor(x)[None], 2).numpy().ravel())

xt = torch.tensor(x)[None].requires_grad_(True)
ym = F.max_pool2d(xt, 2)
d = torch.tensor(rng.standard_normal(ym.shape))
ym.backward(d)
assert np.allclose(S.T @ d.numpy().ravel(), xt.grad.numpy().ravel())   # backward: scatter to the argmax

fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained")
tc.spy(P, ax=axes[0], input_shape=(2, 6, 6), output_shape=(2, 3, 3), colorbar=False, title="average pooling 2x2: P")
tc.spy(S, ax=axes[1], input_shape=(2, 6, 6), output_shape=(2, 3, 3), colorbar=False, title="max pooling 2x2: S(x)");"""),
    ("md", """\
## Compile a CNN

`tc.compile` reads a PyTorch model once: every convolution, pooling and linear layer becomes
a sparse matrix `layer.matrix` (with `layer.bias`), every activation stays a function."""),
    ("code", """\
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
    torch.nn.Conv2d(4, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
    torch.nn.Flatten(), torch.nn.Linear(32, 3),
)
net = tc.compile(model, (1, 8, 8))
print(net)
tc.network_figure(net);"""),
    ("md", """\
## The four backpropagation equations, with matrices

With $z^l = W^l a^{l-1} + b^l$ and $a^l = \\sigma(z^l)$ (a pooling or flatten layer has no
$\\sigma$), and $\\delta^l = \\partial L / \\partial z^l$:

1. $\\delta^L = \\nabla_{a} L \\odot \\sigma'(z^L)$
2. $\\delta^l = (W^{l+1})^\\top \\delta^{l+1} \\odot \\sigma'(z^l)$
3. $\\partial L / \\partial b^l = \\delta^l$ (summed over positions for a convolution's bias, one per channel)
4. $\\partial L / \\partial W^l = \\delta^l (a^{l-1})^\\top$ — for a convolution only the entries
   in $C$'s pattern exist, so this sum runs over the `(row, col, tap)` triples:
   `tc.conv_weight_grad`.

Below: the forward and backward passes written out with the layers' matrices, for a batch
(one sample per column), checked against autograd."""),
    ("code", """\
X = rng.standard_normal((5, 1, 8, 8))
A = X.reshape(5, -1).T                           # (features, N)
acts, zs = [A], []
for layer in net.layers:
    if layer.linear:                             # z = W a + b
        Z = layer.matrix @ A + (layer.bias[:, None] if layer.bias is not None else 0)
        zs.append(None); A = Z
    else:                                        # a = relu(z)
        zs.append(A); A = np.maximum(A, 0)
    acts.append(A)

xt = torch.tensor(X, requires_grad=True)
out = model(xt)
assert np.allclose(A.T, out.detach().numpy())

G = rng.standard_normal(out.shape)               # dL/dy
out.backward(torch.tensor(G))
delta = G.T
for i in reversed(range(len(net.layers))):
    layer = net.layers[i]
    if layer.linear:
        if layer.kind == "Conv2d":               # equation 4 through the triples, equation 3
            m = layer.module
            dW = tc.conv_weight_grad(acts[i].T.reshape(5, *layer.in_shape), delta.T.reshape(5, *layer.out_shape),
                                     m.weight.shape, stride=m.stride, padding=m.padding)
            assert np.allclose(dW, m.weight.grad.numpy())
            db = delta.reshape(m.out_channels, -1, 5).sum(axis=(1, 2))
            assert np.allclose(db, m.bias.grad.numpy())
        delta = layer.matrix.T @ delta            # equation 2: through W^T ...
    else:
        delta = delta * (zs[i] > 0)               # ... and sigma'(z)
assert np.allclose(delta.T.reshape(X.shape), xt.grad.numpy())
print("forward, input gradient and every conv weight and bias gradient match autograd")"""),
    ("md", """\
`net.forward` and `net.backward` do the same (max pooling included, its selection matrix
rebuilt for each input)."""),
    ("code", """\
net.forward(X)
grads, dx = net.backward(G)
assert np.allclose(dx, xt.grad.numpy())
for name, p in model.named_parameters():
    assert np.allclose(grads[name], p.grad.numpy()), name"""),
    ("md", """\
## The CNN as an MLP

`net.to_mlp()` copies each matrix into a dense `nn.Linear`: a plain multilayer perceptron
that computes exactly the same function — with far more (mostly zero, mostly tied) weights."""),
    ("code", """\
mlp = net.to_mlp()
print(mlp)
with torch.no_grad():
    assert torch.allclose(mlp(torch.tensor(X)), model(torch.tensor(X)))
n_cnn = sum(p.numel() for p in model.parameters())
n_mlp = sum(p.numel() for p in mlp.parameters())
print(f"parameters: CNN {n_cnn:,}, the same network as an MLP {n_mlp:,}")"""),
    ("md", """\
**Takeaway.** Backpropagation in a CNN is backpropagation in an MLP whose weight matrices are
the layers' convolution and pooling matrices; the convolution only adds weight sharing,
which turns $\\delta (a)^\\top$ into a sum over the triples."""),
]


def write(name: str, cells) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, text) in enumerate(cells):
        cell = nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text)
        cell.id = f"{name[:2]}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    path = ROOT / "notebooks" / f"{name}.ipynb"
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    import sys

    only = sys.argv[1:]
    for name, cells in NOTEBOOKS.items():
        if not only or any(name.startswith(o) for o in only):
            print("wrote", write(name, cells).relative_to(ROOT))
