"""One oracle per model family: each architecture against an independent implementation
written out here from its published layer list, with the same weights copied in."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import randomise_batchnorm
from spikecim.models import create_model
from spikecim.nn import LIF
from spikecim.nn.neurons import TemporalModule


def _copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy tensors in registration order; the shapes must agree one by one."""
    src_sd = {k: v for k, v in src.state_dict().items() if not k.endswith(("beta", "threshold"))}
    dst_sd = dst.state_dict()
    assert len(src_sd) == len(dst_sd)
    for (ks, vs), (kd, vd) in zip(src_sd.items(), dst_sd.items()):
        assert vs.shape == vd.shape, (ks, kd)
    dst.load_state_dict(dict(zip(dst_sd.keys(), src_sd.values())))


# ---------------------------------------------------------------- VGG (ANN twin)


def _reference_vgg(cfg, hidden, in_ch, size, classes, w):
    """torchvision-style VGG written from the layer list, with BatchNorm and AvgPool."""
    layers, ch = [], in_ch
    for item in cfg:
        if item == "P":
            layers.append(nn.AvgPool2d(2))
            size //= 2
        else:
            c = max(1, round(item * w))
            layers += [nn.Conv2d(ch, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            ch = c
    layers.append(nn.Flatten())
    feat = ch * size * size
    for h in hidden:
        h = max(1, round(h * w))
        layers += [nn.Linear(feat, h), nn.ReLU()]
        feat = h
    layers.append(nn.Linear(feat, classes))
    return nn.Sequential(*layers)


VGG_LAYER_LISTS = {
    # Simonyan & Zisserman 2015 configuration A, and the SNN VGG-9/VGG-5 of Lee et al. 2020
    "vgg5": ([64, "P", 128, 128, "P"], [1024]),
    "vgg9": ([64, 64, "P", 128, 128, "P", 256, 256, 256, "P"], [1024]),
    "vgg11": ([64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"], [1024, 1024]),
}


@pytest.mark.parametrize("name", sorted(VGG_LAYER_LISTS))
def test_vgg_ann_twin_equals_torch_sequential_from_the_layer_list(name):
    torch.manual_seed(0)
    w = 0.125
    model = create_model(name, spiking=False, num_classes=7, in_channels=3, input_size=32, width=w).eval()
    randomise_batchnorm(model, 0)
    cfg, hidden = VGG_LAYER_LISTS[name]
    ref = _reference_vgg(cfg, hidden, 3, 32, 7, w).eval()
    _copy_weights(model, ref)
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], ref(x[0]), rtol=1e-5, atol=1e-5)


def test_vgg9_convolutions_follow_the_spikesim_layer_table():
    """SpikeSim's VGG9/CIFAR-10 example (docs/references.md#spikesim-vgg9): in_ch 3,64,64,128,128,256,256;
    out_ch 64,64,128,128,256,256,256; in_dim 32,32,16,16,8,8,8 (out_dim there is after pooling)."""
    model = create_model("vgg9", spiking=False, in_channels=3, input_size=32)
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.append((m.in_channels, m.out_channels, i[0].shape[-1])))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert [s[0] for s in seen] == [3, 64, 64, 128, 128, 256, 256]
    assert [s[1] for s in seen] == [64, 64, 128, 128, 256, 256, 256]
    assert [s[2] for s in seen] == [32, 32, 16, 16, 8, 8, 8]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(256 * 4 * 4, 1024), (1024, 10)]


def test_vgg11_on_8x8_digits_skips_pooling_below_one_pixel():
    """Five pools on 8x8: 8 -> 4 -> 2 -> 1, the last two are skipped; the classifier sees 512 x 1 x 1."""
    model = create_model("vgg11", spiking=False, in_channels=1, input_size=8)
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 3
    assert next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features == 512


# ---------------------------------------------------------------- ResNet-19 (ANN twin)


class _RefBlock(nn.Module):
    """He et al. 2016 basic block, written independently."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class _RefResNet19(nn.Module):
    """Zheng et al. 2021 (tdBN) ResNet-19: conv 128; 3x128, 3x256, 2x512 basic blocks; avgpool; fc 256; fc."""

    def __init__(self, in_ch, classes, w):
        super().__init__()
        c = lambda n: max(1, round(n * w))
        self.conv = nn.Conv2d(in_ch, c(128), 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c(128))
        blocks, cin = [], c(128)
        for cout, n, stride in [(c(128), 3, 1), (c(256), 3, 2), (c(512), 2, 2)]:
            for i in range(n):
                blocks.append(_RefBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc1 = nn.Linear(cin, c(256))
        self.fc2 = nn.Linear(c(256), classes)

    def forward(self, x):
        h = self.blocks(torch.relu(self.bn(self.conv(x))))
        h = h.mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(h)))


def test_resnet19_ann_twin_equals_an_independent_resnet():
    torch.manual_seed(0)
    w = 0.0625
    model = create_model("resnet19", spiking=False, num_classes=10, in_channels=3, width=w).eval()
    randomise_batchnorm(model, 1)
    ref = _RefResNet19(3, 10, w).eval()
    _copy_weights(model, ref)
    x = torch.randn(1, 3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], ref(x[0]), rtol=1e-5, atol=1e-5)


def test_resnet19_has_17_conv3x3_and_2_linear_layers():
    """Zheng et al. 2021: 1 + 2*(3 + 3 + 2) = 17 convolutions of 3x3, then fc 256 and fc classes."""
    model = create_model("resnet19", spiking=True, width=0.0625)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(m.kernel_size == (3, 3) for m in convs) == 17
    assert sum(m.kernel_size == (1, 1) for m in convs) == 2  # the two projection shortcuts
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 2


# ---------------------------------------------------------------- spiking: step loops with snnTorch


def _leaky(beta, thr):
    import snntorch as snn

    # delayed subtract reset, atan (docs/references.md#lif-peers)
    return snn.Leaky(beta=beta, threshold=thr).double()


def test_spiking_convnet_equals_a_step_loop_with_snntorch_leaky():
    """The time-folded spiking convnet equals running each step through the same layers with
    snnTorch ``Leaky`` neurons holding the state between steps."""
    torch.manual_seed(0)
    model = create_model(
        "convnet",
        spiking=True,
        in_channels=1,
        input_size=8,
        width=0.25,
        neuron_kw={"beta": 0.7, "threshold": 0.5},
    ).eval()
    randomise_batchnorm(model, 2)
    model.double()  # float64 so that no spike flips on rounding differences between batch sizes
    x = torch.randn(6, 3, 1, 8, 8, dtype=torch.float64) * 2
    with torch.no_grad():
        got = model(x)
        layers = list(model)
        neurons = {i: _leaky(0.7, 0.5) for i, m in enumerate(layers) if isinstance(m, LIF)}
        mems = {i: None for i in neurons}
        outs, fired = [], 0.0
        for t in range(x.shape[0]):
            h = x[t]
            for i, m in enumerate(layers):
                if i in neurons:
                    mem = torch.zeros_like(h) if mems[i] is None else mems[i]
                    h, mems[i] = neurons[i](h, mem)
                    h = h.to(x.dtype)  # snnTorch's spike function returns float32
                    fired += h.sum().item()
                else:
                    h = m(h)
            outs.append(h)
    assert fired > 0
    torch.testing.assert_close(got, torch.stack(outs), rtol=1e-5, atol=1e-5)


def test_spiking_residual_block_equals_a_step_loop_with_snntorch_leaky():
    """A strided spiking BasicBlock of ResNet-19 against the block equation stepped by hand:
    out[t] = S2(BN(conv2(S1(BN(conv1 x[t])))) + BN(conv1x1 x[t])) with snnTorch Leaky for S1, S2."""
    torch.manual_seed(0)
    model = create_model(
        "resnet19", spiking=True, in_channels=3, width=0.0625, neuron_kw={"beta": 0.8, "threshold": 0.5}
    ).eval()
    randomise_batchnorm(model, 3)
    model.double()  # float64 so that no spike flips on rounding differences between batch sizes
    block = [m for m in model.modules() if isinstance(m, TemporalModule) and hasattr(m, "shortcut")][3]
    assert isinstance(block.shortcut, nn.Sequential)  # first block of stage 2: stride 2, projection
    x = (torch.rand(5, 2, block.conv1.in_channels, 8, 8) < 0.3).double()
    with torch.no_grad():
        got = block(x)
        n1, n2 = _leaky(0.8, 0.5), _leaky(0.8, 0.5)
        m1 = m2 = None
        outs = []
        for t in range(x.shape[0]):
            a = block.bn1(block.conv1(x[t]))
            m1 = torch.zeros_like(a) if m1 is None else m1
            s1, m1 = n1(a, m1)
            s1 = s1.to(x.dtype)  # snnTorch's spike function returns float32
            b = block.bn2(block.conv2(s1)) + block.shortcut(x[t])
            m2 = torch.zeros_like(b) if m2 is None else m2
            s2, m2 = n2(b, m2)
            outs.append(s2.to(x.dtype))
    ref = torch.stack(outs)
    assert 0 < ref.mean() < 1
    torch.testing.assert_close(got, ref, rtol=0, atol=0)  # spikes: exactly equal


def test_spiking_mlp_equals_matmuls_stepped_with_snntorch_leaky():
    """MLP: Flatten -> Linear(64 -> 16) -> LIF -> Linear(16 -> 5), written out as matrix
    products with snnTorch ``Leaky`` holding the state between steps."""
    torch.manual_seed(0)
    model = create_model(
        "mlp", spiking=True, num_classes=5, hidden=(16,), neuron_kw={"beta": 0.6, "threshold": 0.4}
    ).double()
    fc1, fc2 = [m for m in model.modules() if isinstance(m, nn.Linear)]
    x = torch.rand(7, 3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        got = model(x)
        neuron, mem, outs, fired = _leaky(0.6, 0.4), torch.zeros(3, 16, dtype=torch.float64), [], 0.0
        for t in range(7):
            s, mem = neuron(x[t].reshape(3, 64) @ fc1.weight.T + fc1.bias, mem)
            fired += s.sum().item()
            outs.append(s.double() @ fc2.weight.T + fc2.bias)
    assert fired > 0
    torch.testing.assert_close(got, torch.stack(outs), rtol=1e-12, atol=1e-12)
