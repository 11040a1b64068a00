"""Small models that are graphs, written as their authors write them: residual blocks, a U-Net,
squeeze-and-excitation, attention, functional code, 1D and 3D models (the tests and the
benchmarks share them)."""

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """A ResNet block: identity or 1x1 projection shortcut, ``out += identity``."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Attention(nn.Module):
    """Multi-head self-attention as timm writes it, with the batch axis kept first."""

    def __init__(self, d=6, heads=2):
        super().__init__()
        self.heads, self.scale = heads, (d // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(0, 2, 3, 1, 4).unbind(1)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class ResNet(nn.Module):
    def __init__(self, widths=(4, 8), blocks=1, classes=5, cin=3):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(c, w, 2 if (i and not b) else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, 1)
        return self.fc(x)


class UNet(nn.Module):
    """Two levels, ``torch.cat`` skips, one ``nn.Upsample`` and one ``ConvTranspose2d``."""

    def __init__(self, c=4):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.mid = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU())
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = nn.Sequential(nn.Conv2d(4 * c, c, 3, padding=1), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(c, c, 2, stride=2)
        self.dec2 = nn.Conv2d(2 * c, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        m = self.mid(e2)
        d1 = self.dec1(torch.cat([self.up1(m), e2], dim=1))
        return self.dec2(torch.cat((self.up2(d1), e1), 1))


class SEBlock(nn.Module):
    """Squeeze-and-excitation: ``x * s[:, :, None, None]`` with ``s`` from the mean over space."""

    def __init__(self, c=6, r=2):
        super().__init__()
        self.conv = nn.Conv2d(2, c, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(c, c // r), nn.Linear(c // r, c)

    def forward(self, x):
        x = self.conv(x)
        s = x.mean((2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None] + 0.5 * x


class Functional(nn.Module):
    """Only functional calls, parameters read as attributes."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(4, 2, 3, 3) / 3)
        self.b1 = nn.Parameter(torch.randn(4) / 3)
        self.w2 = nn.Parameter(torch.randn(3, 4 * 3 * 3) / 6)

    def forward(self, x):
        y = F.conv2d(x, self.w1, self.b1, stride=1, padding=1)
        y = F.leaky_relu(y, 0.1)
        y = F.pad(y, (1, 0, 0, 1), mode="reflect")
        y = F.avg_pool2d(y, 2)
        y = y.view(y.size(0), -1)
        return F.log_softmax(F.linear(y, self.w2), dim=1)


class Audio1d(nn.Module):
    """A 1D residual model: dilated convolutions, ``x + F(x)``, upsampling by 2."""

    def __init__(self, c=4):
        super().__init__()
        self.inp = nn.Conv1d(1, c, 5, padding=2)
        self.blocks = nn.ModuleList([nn.Conv1d(c, c, 3, padding=d, dilation=d) for d in (1, 2, 4)])
        self.out = nn.Conv1d(c, 1, 1)

    def forward(self, x):
        h = self.inp(x)
        for conv in self.blocks:
            h = h + torch.tanh(conv(h))
        h = F.interpolate(h, scale_factor=2, mode="linear", align_corners=True)
        return self.out(F.silu(h))


class Volume3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv3d(1, 2, 3, padding=1, padding_mode="circular")
        self.b = nn.Conv3d(2, 2, 3, padding=1)
        self.pool = nn.MaxPool3d(2)

    def forward(self, x):
        y = F.elu(self.a(x))
        y = y - self.b(y)
        return self.pool(y).sum(dim=(2, 3, 4))


class DnCNN(nn.Module):
    """A bias-free denoiser ``x - f(x)`` (the residual form of DnCNN)."""

    def __init__(self, depth=4, c=4, cin=1):
        super().__init__()
        layers = [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.ReLU()]
        layers.append(nn.Conv2d(c, cin, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return x - self.body(x)


def randomize_batch_norm(model, generator=None):
    """Give every BatchNorm non-trivial running statistics and affine parameters (then eval)."""
    g = generator or torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


class Stencil1d(nn.Module):
    """A 1D residual stack of 'same' convolutions: the packed method's other dimension."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv1d(2, 3, 5, padding=2), nn.Conv1d(3, 2, 3, padding=2, dilation=2)

    def forward(self, x):
        return x + self.b(torch.tanh(self.a(x)))


#: Stencil networks (stride-1 'same' convolutions and elementwise nodes): the packed and
#: meet-in-the-middle Jacobians' cases.
STENCILS = {
    "dncnn": (DnCNN(depth=4, c=4), (1, 20, 19)),
    "dncnn-two-channels": (DnCNN(depth=3, c=3, cin=2), (2, 13, 11)),
    "batchnorm-dilation-rectangular": (randomize_batch_norm(nn.Sequential(
        nn.Conv2d(2, 3, (3, 5), padding=(1, 2)), nn.BatchNorm2d(3), nn.ELU(),
        nn.Conv2d(3, 2, 3, padding=2, dilation=2, groups=1))), (2, 15, 17)),
    "grouped": (nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.ReLU(),
                              nn.Conv2d(4, 2, 3, padding=1, groups=2)), (4, 12, 12)),
    "1d-residual": (Stencil1d(), (2, 40)),
    "3d": (nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.Sigmoid(), nn.Conv3d(2, 1, 3, padding=1)), (1, 7, 8, 6)),
    # a convolution read by a convolution: its squares are masked to the image
    "conv-into-conv": (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(2, 1, 3, padding=1)), (1, 17, 16)),
}
