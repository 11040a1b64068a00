"""Architecture zoo: compile, forward + backward and the exact Jacobian of small modern networks.

Run from the repository root::

    python benchmarks/bench_architectures.py              # 12 architectures at 3x32x32 (a few minutes)
    python benchmarks/bench_architectures.py --quick      # smoke run: 3 of them at 3x8x8, one repeat
    python benchmarks/bench_architectures.py --size 16 --repeats 5 --only resnet vit
    python benchmarks/bench_architectures.py --image-to-image   # dense-Jacobian blocks too (slow)

One row per architecture, each a compact hand-written model (widths 8-16) in float64, eval
mode, every BatchNorm with non-trivial running statistics (a few train-mode forwards on random
data first) and every normalisation's affine parameters drawn at random. The classifiers
(ResNet, VGG, ViT, PointNet) end in 10 logits. The blocks sit after a 3x3 stem (3 -> c) and
end in a head: a 1x1 convolution back to 3 channels (``image``: the Jacobian image to image,
sparse) for the local ones (MobileNetV2, ShuffleNetV2, ConvNeXt), a global average pool and a
linear layer to 10 logits for those with a global op (squeeze-and-excitation, CBAM's channel
attention, GroupNorm, InstanceNorm), whose image-to-image Jacobian would be a dense 3072 x 3072
square at 32x32 (``--image-to-image`` measures them so: for the SE-ResNet block ~2 min a call
ours, 20 s jacrev, ~6 GiB, so several minutes per architecture).

Columns: ``compile`` the time of ``tc.compile``; ``matrices`` ``net.memory_report().total``
(the CSR bytes of every linear node's matrix, all built); ``torch f+b`` autograd forward and
backward of the model on one sample (parameter and input gradients), ``ours f+b``
``net.forward`` + ``net.backward`` on the same sample; ``J method`` what
``tc.jacobian_plan(net, x).method`` chose for ``net.jacobian(x)`` (``method='auto'``);
``nnz(J)`` the Jacobian's stored nonzeros; ``J first`` its first call, ``J warm`` the later
ones; ``jacrev`` the dense ``torch.func.jacrev`` of ``lambda v: model(v[None])[0]`` at the
same input (warm); ``ours/jacrev`` the ratio of the warm times (below 1 ours is faster);
``max diff vs jacrev`` the max absolute difference of the two Jacobians.

``'forward'`` and ``'reverse'`` differentiate the traced model with torch (``vmap`` of
``jvp`` / ``vjp``), as jacrev does, so their agreement with it checks the colouring only:
where ``auto`` picked one of them, ``chain check`` is the max absolute difference from jacrev
of ``net.jacobian(x, method='chain')`` (the product of the network's own sparse matrices,
untimed; skipped when its estimate exceeds 10 s); ``'packed'`` and ``'chain'`` use the
network's matrices already. ``notes`` has anything that failed or differs (the forward or the
input gradient off autograd's by more than 1e-9, a Jacobian off jacrev's by more than 1e-9).

Every warm time is the minimum over ``--repeats`` runs after a warm-up; the two sides of each
comparison run interleaved (``compare_min``) so that both see the same background load. A
Jacobian whose first call takes over 5 s (on either side) is timed warm by one more call each.
torch runs on one thread by default (``--threads``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from _timing import compare_min, fmt_bytes, fmt_time, machine_info, markdown_table, peak_rss  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import toeplitz_conv as tc  # noqa: E402
from graph_models import Attention, BasicBlock  # noqa: E402  (the tests' models)


# --------------------------------------------------------------------------- building blocks


def conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


def make_head(c, head):
    if head == "image":
        return nn.Conv2d(c, 3, 1)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


class StemBlocksHead(nn.Module):
    """Blocks between a 3x3 stem (3 -> c) and a head: ``'image'`` a 1x1 convolution back to 3
    channels (the Jacobian image to image), ``'logits'`` a global average pool and a linear
    layer to 10 classes (the Jacobian 10 rows)."""

    def __init__(self, c, *blocks, stem_act=nn.ReLU, head="image"):
        super().__init__()
        self.stem, self.blocks = conv_bn(3, c, act=stem_act), nn.Sequential(*blocks)
        self.head = make_head(c, head)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


# --------------------------------------------------------------------------- ResNet, VGG


class TinyResNet(nn.Module):
    """ResNet-18's shape, shrunk: stem, two stages of two basic blocks (8 and 16 channels)."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = conv_bn(3, 8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class VGGBN(nn.Module):
    def __init__(self, size, classes=10):
        super().__init__()
        self.features = nn.Sequential(conv_bn(3, 8), conv_bn(8, 8), nn.MaxPool2d(2),
                                      conv_bn(8, 16), conv_bn(16, 16), nn.MaxPool2d(2))
        self.classifier = nn.Linear(16 * (size // 4) ** 2, classes)

    def forward(self, x):
        return self.classifier(self.features(x).view(x.size(0), -1))


# --------------------------------------------------------------------------- mobile networks


class InvertedResidual(nn.Module):
    """MobileNetV2: 1x1 expand, 3x3 depthwise, 1x1 linear projection, residual."""

    def __init__(self, c, expand=4):
        super().__init__()
        h = c * expand
        self.conv = nn.Sequential(conv_bn(c, h, 1, act=nn.ReLU6), conv_bn(h, h, 3, groups=h, act=nn.ReLU6),
                                  conv_bn(h, c, 1, act=None))

    def forward(self, x):
        return x + self.conv(x)


class SqueezeExcitationV3(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.relu = nn.Conv2d(c, c // r, 1), nn.ReLU()
        self.fc2, self.gate = nn.Conv2d(c // r, c, 1), nn.Hardsigmoid()

    def forward(self, x):
        s = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * s.expand_as(x)


class MobileNetV3Block(nn.Module):
    """MobileNetV3's bneck: 1x1 expand + Hardswish, depthwise + Hardswish, SE (Hardsigmoid), 1x1.

    torch's CPU backward of Hardsigmoid rounds its 1/6 to float32: jacrev's Jacobian is off the
    exact one by ~1e-11 relative (the chain check shows it; with Sigmoid it is ~1e-16)."""

    def __init__(self, c, expand=4):
        super().__init__()
        h = c * expand
        self.expand = conv_bn(c, h, 1, act=nn.Hardswish)
        self.dw = conv_bn(h, h, 3, groups=h, act=nn.Hardswish)
        self.se = SqueezeExcitationV3(h)
        self.project = conv_bn(h, c, 1, act=None)

    def forward(self, x):
        return x + self.project(self.se(self.dw(self.expand(x))))


def channel_shuffle(x, groups: int):
    """torchvision's ShuffleNetV2 channel shuffle, as written there."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's stride-1 unit: split the channels, transform one half, concatenate, shuffle."""

    def __init__(self, c):
        super().__init__()
        b = c // 2
        self.branch2 = nn.Sequential(conv_bn(b, b, 1), conv_bn(b, b, 3, groups=b, act=None), conv_bn(b, b, 1))

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1), 2)


# --------------------------------------------------------------------------- attention in CNNs


class SELayer(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(c, c // r, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(c // r, c, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class GatedBasicBlock(BasicBlock):
    """A ResNet basic block whose residual branch ends in a gate (squeeze-and-excitation, CBAM)."""

    def __init__(self, c, gate):
        super().__init__(c, c)
        self.gate = gate

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.gate(self.bn2(self.conv2(out)))
        return self.relu(out + x)


class CBAM(nn.Module):
    """Channel attention (shared MLP of the average and max pools), then spatial attention
    (a 7x7 convolution of the mean and max over channels)."""

    def __init__(self, c, r=4):
        super().__init__()
        self.avg, self.max = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)
        self.mlp = nn.Sequential(nn.Conv2d(c, c // r, 1, bias=False), nn.ReLU(), nn.Conv2d(c // r, c, 1, bias=False))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3, bias=False)

    def forward(self, x):
        x = x * torch.sigmoid(self.mlp(self.avg(x)) + self.mlp(self.max(x)))
        att = torch.cat([torch.mean(x, 1, keepdim=True), torch.max(x, 1, keepdim=True)[0]], 1)
        return x * torch.sigmoid(self.spatial(att))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7, LayerNorm over channels last, Linear-GELU-Linear, layer scale, residual."""

    def __init__(self, c, expand=4):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(c, expand * c), nn.GELU(), nn.Linear(expand * c, c)
        self.gamma = nn.Parameter(torch.linspace(0.1, 0.9, c))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        y = self.gamma * y
        return x + y.permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- image to image


class UNetBlock(nn.Module):
    """A two-level U-Net with GroupNorm: down by a stride-2 conv, up by nearest upsampling,
    the skip concatenated."""

    def __init__(self, c=8, head="image"):
        super().__init__()
        gn = lambda ch: nn.GroupNorm(4, ch)  # noqa: E731
        self.enc = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), gn(c), nn.SiLU())
        self.down = nn.Sequential(nn.Conv2d(c, 2 * c, 3, 2, 1), gn(2 * c), nn.SiLU(),
                                  nn.Conv2d(2 * c, 2 * c, 3, padding=1), gn(2 * c), nn.SiLU())
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, c, 3, padding=1))
        self.dec = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), gn(c), nn.SiLU(), make_head(c, head))

    def forward(self, x):
        e = self.enc(x)
        return self.dec(torch.cat([e, self.up(self.down(e))], dim=1))


class SRResidualBlock(nn.Module):
    """The style-transfer / SRGAN residual block: conv-IN-PReLU-conv-IN plus the input."""

    def __init__(self, c):
        super().__init__()
        self.conv1, self.in1 = nn.Conv2d(c, c, 3, padding=1), nn.InstanceNorm2d(c, affine=True)
        self.prelu = nn.PReLU(c)
        self.conv2, self.in2 = nn.Conv2d(c, c, 3, padding=1), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        return x + self.in2(self.conv2(self.prelu(self.in1(self.conv1(x)))))


class SRNet(nn.Module):
    def __init__(self, c=16, head="image"):
        super().__init__()
        self.head, self.act = nn.Conv2d(3, c, 3, padding=1), nn.PReLU()
        self.body = nn.Sequential(SRResidualBlock(c), SRResidualBlock(c))
        self.tail = nn.Conv2d(c, 3, 3, padding=1) if head == "image" else make_head(c, head)

    def forward(self, x):
        return self.tail(self.body(self.act(self.head(x))))


# --------------------------------------------------------------------------- tokens, points


class TinyViT(nn.Module):
    """Patches of 4x4 (a stride-4 conv), a class token, position embeddings, one pre-norm block."""

    def __init__(self, size, d=16, classes=10):
        super().__init__()
        n = (size // 4) ** 2
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls, self.pos = nn.Parameter(torch.randn(1, 1, d) * 0.5), nn.Parameter(torch.randn(1, n + 1, d) * 0.5)
        self.norm1, self.attn = nn.LayerNorm(d), Attention(d)
        self.norm2, self.mlp = nn.LayerNorm(d), nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return self.head(self.norm(x)[:, 0])


class PointNet(nn.Module):
    """Shared per-point MLP (1x1 Conv1d + BN + ReLU), max over the points, a classifier."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(3, 16, 1), nn.BatchNorm1d(16), nn.ReLU(),
                                      nn.Conv1d(16, 32, 1), nn.BatchNorm1d(32), nn.ReLU(),
                                      nn.Conv1d(32, 64, 1), nn.BatchNorm1d(64), nn.ReLU())
        self.classifier = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(torch.max(self.features(x), 2).values)


IMAGE = lambda s: (3, s, s)  # noqa: E731
# name -> (builder(size, head), input shape(size), head). The head of the blocks: 'image' where
# the Jacobian is sparse (local receptive fields), 'logits' where a global op (squeeze-and-
# excitation, channel attention, GroupNorm, InstanceNorm) makes it dense: at 32x32 a dense
# 3072 x 3072 Jacobian takes ~1-2 min a call each way (--image-to-image measures them so).
# None: a classifier, always 10 logits.
ARCHITECTURES = {
    "ResNet (tiny, 2 stages)": (lambda s, h: TinyResNet(), IMAGE, None),
    "VGG-BN": (lambda s, h: VGGBN(s), IMAGE, None),
    "MobileNetV2 inverted residual x2": (
        lambda s, h: StemBlocksHead(8, InvertedResidual(8, 2), InvertedResidual(8, 2), stem_act=nn.ReLU6, head=h),
        IMAGE, "image"),
    "MobileNetV3 block (SE, h-swish)": (
        lambda s, h: StemBlocksHead(8, MobileNetV3Block(8), stem_act=nn.Hardswish, head=h), IMAGE, "logits"),
    "ShuffleNetV2 unit x2": (lambda s, h: StemBlocksHead(16, ShuffleUnit(16), ShuffleUnit(16), head=h),
                             IMAGE, "image"),
    "SE-ResNet block": (lambda s, h: StemBlocksHead(16, GatedBasicBlock(16, SELayer(16)), head=h), IMAGE, "logits"),
    "CBAM block": (lambda s, h: StemBlocksHead(16, GatedBasicBlock(16, CBAM(16)), head=h), IMAGE, "logits"),
    "ConvNeXt block": (lambda s, h: StemBlocksHead(8, ConvNeXtBlock(8), stem_act=nn.GELU, head=h), IMAGE, "image"),
    "U-Net (GroupNorm, 2 levels)": (lambda s, h: UNetBlock(8, head=h), IMAGE, "logits"),
    "SRGAN (InstanceNorm, PReLU) x2": (lambda s, h: SRNet(16, head=h), IMAGE, "logits"),
    "ViT (tiny, 1 block)": (lambda s, h: TinyViT(s), IMAGE, None),
    "PointNet": (lambda s, h: PointNet(), lambda s: (3, 2 * s), None),
}
QUICK = ["ShuffleNetV2 unit x2", "ViT (tiny, 1 block)", "PointNet"]


def prepare(model: nn.Module, shape, seed: int) -> nn.Module:
    """Float64; random normalisation affines; BatchNorm running statistics from a few
    train-mode forwards on random data; then eval mode."""
    torch.manual_seed(seed)
    model = model.double()
    norms = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, norms) and getattr(m, "weight", None) is not None:
                m.weight.copy_(1 + 0.3 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
        model.train()
        for _ in range(3):
            model(1.5 * torch.randn(8, *shape, dtype=torch.float64) + 0.3)
    return model.eval()


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]


CHAIN_CHECK = 10.0  # seconds: the independent chain check runs when estimated faster than this
SLOW = 5.0  # seconds: when a first Jacobian call takes longer, each side is timed by one more call


def run_one(name: str, size: int, repeats: int, budget: float, image_to_image: bool = False,
            seed: int = 0) -> list[str]:
    make, shape_of, head = ARCHITECTURES[name]
    shape = shape_of(size)
    model = prepare(make(size, "image" if image_to_image else head), shape, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(1, *shape, dtype=torch.float64, generator=g)
    with torch.no_grad():
        y_ref = model(x)
    dy = torch.randn(y_ref.shape, dtype=torch.float64, generator=g)
    xn, dyn = x.numpy(), dy.numpy()
    row = {"architecture": name, "input": "x".join(map(str, shape)), "output": "x".join(map(str, y_ref.shape[1:]))}
    notes: list[str] = []

    def finish():
        return [row.get(c, "-") for c in KEYS] + ["; ".join(notes) or "ok"]

    # compile (minimum over the repeats: each a fresh compile of the same model)
    best = float("inf")
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            net = tc.compile(model, shape)
            best = min(best, time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001  (reported in the table)
        notes.append("compile failed: " + _err(e))
        return finish()
    row["compile"] = fmt_time(best)
    try:
        row["matrices"] = fmt_bytes(net.memory_report().total)
    except Exception as e:  # noqa: BLE001
        notes.append("memory_report: " + _err(e))

    # forward + backward (input and parameter gradients), against autograd's
    params = list(model.parameters())

    def torch_fb():
        for p in params:
            p.grad = None
        xt = x.clone().requires_grad_()
        model(xt).backward(dy)
        return xt.grad

    def ours_fb():
        y = net.forward(xn)
        return y, net.backward(dyn)

    try:
        y, (_, dx) = ours_fb()
        dx_ref = torch_fb()
        fdiff = float(np.abs(y - y_ref.numpy()).max())
        bdiff = float(np.abs(dx - dx_ref.numpy()).max())
        if max(fdiff, bdiff) > 1e-9:
            notes.append(f"forward differs by {fdiff:.1e}, input gradient by {bdiff:.1e}")
        t = compare_min({"torch": torch_fb, "ours": ours_fb}, warmup=1, min_runs=repeats, budget=budget)
        row["torch f+b"], row["ours f+b"] = fmt_time(t["torch"]), fmt_time(t["ours"])
    except Exception as e:  # noqa: BLE001
        notes.append("forward/backward failed: " + _err(e))

    # the Jacobian: ours (method 'auto') against torch.func.jacrev, dense, at the same input
    x0 = x[0]
    jacrev = torch.func.jacrev(lambda v: model(v[None])[0])

    def ours_j():
        return net.jacobian(xn[0])

    def torch_j():
        return jacrev(x0)

    first = {}
    try:
        plan = tc.jacobian_plan(net, xn[0])
        row["J method"] = plan.method
        t0 = time.perf_counter()
        J = ours_j()
        first["ours"] = time.perf_counter() - t0
        row["J first"], row["nnz(J)"] = fmt_time(first["ours"]), f"{J.nnz:,}"
    except Exception as e:  # noqa: BLE001
        notes.append("jacobian failed: " + _err(e))
        J = None
    try:
        t0 = time.perf_counter()
        D = torch_j().detach().reshape(y_ref[0].numel(), x0.numel()).numpy()
        first["jacrev"] = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001
        notes.append("jacrev failed: " + _err(e))
        D = None
    if J is None or D is None:
        return finish()
    diff = float(np.abs(J.toarray() - D).max())
    row["max diff vs jacrev"] = f"{diff:.1e}"
    if diff > 1e-9:
        notes.append(f"Jacobian differs from jacrev's by {diff:.1e}")
    # 'forward' and 'reverse' differentiate the traced model with torch (vmap of jvp / vjp), as
    # jacrev does: agreeing with it checks the colouring only. 'chain' multiplies the network's own
    # sparse matrices, an independent check of them (untimed; skipped when estimated slow).
    if plan.method in ("forward", "reverse"):
        est = plan.seconds.get("chain", float("inf"))
        if est < CHAIN_CHECK:
            try:
                cdiff = float(np.abs(net.jacobian(xn[0], method="chain").toarray() - D).max())
                row["chain check"] = f"{cdiff:.1e}"
                if cdiff > 1e-9:
                    notes.append(f"the chain's Jacobian differs from jacrev's by {cdiff:.1e}")
            except Exception as e:  # noqa: BLE001
                notes.append("chain check failed: " + _err(e))
        else:
            row["chain check"] = f"skipped (est. {est:.0f} s)"
    else:
        row["chain check"] = "(auto is)"
    del D, J
    if max(first.values()) < SLOW:
        t = compare_min({"ours": ours_j, "jacrev": torch_j}, warmup=1, min_runs=repeats, budget=2 * budget)
    else:  # both sides were warmed by their first call: one more call each, no repeats
        t = {}
        for side, fn in (("ours", ours_j), ("jacrev", torch_j)):
            t0 = time.perf_counter()
            fn()
            t[side] = time.perf_counter() - t0
        notes.append(f"a first call over {SLOW:.0f} s: warm times from one call each")
    row["J warm"], row["jacrev"] = fmt_time(t["ours"]), fmt_time(t["jacrev"])
    row["ours/jacrev"] = f"{t['ours'] / t['jacrev']:.2f}"
    return finish()


COLUMNS = ["architecture", "input", "output", "compile", "matrices", "torch f+b", "ours f+b", "J method",
           "nnz(J)", "J first", "J warm", "jacrev", "ours/jacrev", "max diff vs jacrev", "chain check", "notes"]
KEYS = COLUMNS[:-1]


def _warm_up():
    """One untimed compile, forward, backward and Jacobian of a small model: the first
    architecture is not charged with the imports and caches of the first call."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).double().eval()
    net = tc.compile(model, (3, 6, 6))
    x = np.ones((1, 3, 6, 6))
    net.backward(net.forward(x))
    net.jacobian(x[0])
    torch.func.jacrev(lambda v: model(v[None])[0])(torch.ones(3, 6, 6, dtype=torch.float64))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 architectures at 8x8, one repeat (a smoke run)")
    ap.add_argument("--size", type=int, default=32, help="input side (default 32; PointNet gets 2*size points)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (the minimum is reported)")
    ap.add_argument("--only", nargs="*", help="architectures whose name starts with one of these")
    ap.add_argument("--image-to-image", action="store_true",
                    help="every block ends in a 1x1 conv to 3 channels, also those whose Jacobian is then a "
                         "dense square (slow at 32x32: minutes per architecture, ~6 GiB)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default 1: batch-1 models this small gain nothing from more, and "
                         "on a shared 2-core machine 2 OpenMP threads make autograd 10x slower and bimodal; "
                         "0 keeps torch's default)")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        with warnings.catch_warnings():  # the chain multiplies large factors in torch's sparse CSR (beta)
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            _run(args)
    finally:
        torch.set_num_threads(threads)  # restored: main may run inside pytest


def _run(args):
    size, repeats = (8, 1) if args.quick else (args.size, args.repeats)
    budget = 0.0 if args.quick else 0.5 * repeats  # seconds per comparison, beyond the minimum runs
    names = QUICK if args.quick else list(ARCHITECTURES)
    if args.only:
        names = [n for n in names if n.lower().startswith(tuple(o.lower() for o in args.only))]

    t_start = time.perf_counter()
    print(machine_info() + "\n")
    _warm_up()
    heads = "every block's head 'image'" if args.image_to_image else "heads as listed in ARCHITECTURES"
    print(f"## Architectures at {size}x{size}, float64, eval mode, batch 1, {heads} "
          f"(minimum of {repeats} run{'s' if repeats > 1 else ''})\n")
    rows = []
    for name in names:
        try:
            rows.append(run_one(name, size, repeats, budget, args.image_to_image))
        except Exception as e:  # noqa: BLE001  (a model that does not even build: reported, the run goes on)
            traceback.print_exc()
            rows.append([name] + ["-"] * (len(COLUMNS) - 2) + ["failed: " + _err(e)])
        print(f"  done: {name} ({fmt_time(time.perf_counter() - t_start)} so far)", file=sys.stderr, flush=True)
    print(markdown_table(COLUMNS, rows))
    peak = peak_rss()
    print(f"\ntotal {fmt_time(time.perf_counter() - t_start)}, peak RSS {fmt_bytes(peak)}; "
          "load avg at the end " + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
