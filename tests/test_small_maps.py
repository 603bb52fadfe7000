from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import TINY_CLASSES, compose_train
from speechcls.callbacks import CPUTuning
from speechcls.models.small_maps import SmallMapConv2d, train_small_maps_by_matrix_products
from speechcls.models.torchvision_nets import TorchvisionClassifier
from speechcls.module import build_module


@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "padding", "dilation", "bias"),
    [
        ((4, 8, 2, 1), 3, 1, 1, 1, False),  # ResNet18 layer4 on 64x32 log-mels
        ((4, 8, 4, 2), 3, 2, 1, 1, True),  # its strided entry
        ((4, 8, 4, 2), 1, 2, 0, 1, False),  # the 1x1 downsample
        ((3, 5, 2, 1), 3, 1, 2, 2, True),  # dilated
    ],
)
def test_matrix_product_path_matches_the_convolution_and_its_gradients(shape, kernel, stride, padding, dilation, bias):
    torch.manual_seed(0)
    reference = nn.Conv2d(shape[1], 6, kernel, stride, padding, dilation, bias=bias)
    conv = train_small_maps_by_matrix_products(nn.Sequential(reference))[0]
    assert isinstance(conv, SmallMapConv2d) and conv.weight is reference.weight
    x = torch.randn(shape, requires_grad=True)
    out = conv(x)
    positions = out.shape[-2] * out.shape[-1]
    assert positions <= SmallMapConv2d.max_positions  # the matrix-product path is the one under test
    expected = nn.functional.conv2d(x, reference.weight, reference.bias, stride, padding, dilation)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, conv.weight), grad)
    wanted = torch.autograd.grad(expected, (x, reference.weight), grad)
    for a, b in zip(got, wanted, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_resnet18_keeps_its_state_dict_and_outputs(tmp_path):
    torch.manual_seed(0)
    plain = TorchvisionClassifier("resnet18", 35, in_channels=1)
    swapped = TorchvisionClassifier("resnet18", 35, in_channels=1)
    swapped.load_state_dict(plain.state_dict())
    train_small_maps_by_matrix_products(swapped)
    assert sum(isinstance(m, SmallMapConv2d) for m in swapped.modules()) == 20  # every convolution
    state, swapped_state = plain.state_dict(), swapped.state_dict()
    assert state.keys() == swapped_state.keys()
    assert all(torch.equal(state[k], swapped_state[k]) for k in state)
    spectrogram = torch.randn(8, 1, 64, 32)
    plain.train(), swapped.train()
    torch.testing.assert_close(swapped(spectrogram), plain(spectrogram), rtol=1e-4, atol=1e-4)
    loss, swapped_loss = plain(spectrogram).square().sum(), swapped(spectrogram).square().sum()
    plain_grads = torch.autograd.grad(loss, list(plain.parameters()))
    swapped_grads = torch.autograd.grad(swapped_loss, list(swapped.parameters()))
    for a, b in zip(swapped_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_grouped_and_large_map_convolutions_keep_the_ordinary_path(monkeypatch):
    net = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 4, 3, padding="same"))
    train_small_maps_by_matrix_products(net)
    assert all(type(m) is nn.Conv2d for m in net)
    conv = train_small_maps_by_matrix_products(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1)))[0]
    unfolded = []
    unfold = nn.functional.unfold
    monkeypatch.setattr(nn.functional, "unfold", lambda *args, **kwargs: unfolded.append(1) or unfold(*args, **kwargs))
    conv(torch.randn(1, 2, 8, 8))  # 64 positions
    assert not unfolded
    small = torch.randn(1, 2, 2, 1)
    with torch.no_grad():  # inference and export take the ordinary path whatever the size
        conv(small)
    assert not unfolded
    conv(small)
    assert unfolded  # the path the two checks above rule out


def test_kernel_taps_that_meet_only_padding_are_left_out_of_the_product(monkeypatch):
    conv = train_small_maps_by_matrix_products(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1)))[0]
    kernels = []
    unfold = nn.functional.unfold
    monkeypatch.setattr(
        nn.functional, "unfold", lambda x, kernel, *args: kernels.append(tuple(kernel)) or unfold(x, kernel, *args)
    )
    conv(torch.randn(1, 2, 2, 1))  # ResNet18's layer4 maps: the outer kernel columns meet only padding
    conv(torch.randn(1, 2, 2, 2))  # every tap meets data at some position
    assert kernels == [(3, 1), (3, 3)]


def test_cpu_tuning_swaps_convolutions_for_cpu_fitting_only(tmp_path, kaggle_root):
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={kaggle_root}")
    assert cfg.callbacks.cpu_tuning._target_ == "speechcls.callbacks.CPUTuning"  # the default runs use it
    module = build_module(cfg, TINY_CLASSES)
    swapped = lambda: sum(isinstance(m, SmallMapConv2d) for m in module.net.modules())  # noqa: E731
    assert swapped() == 0  # the module as built, and as a checkpoint rebuilds it, is the plain network
    on = lambda device: SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))  # noqa: E731
    CPUTuning(reuse_freed_memory=False).setup(on("cuda"), module, "fit")
    CPUTuning(reuse_freed_memory=False).setup(on("cpu"), module, "predict")
    assert swapped() == 0
    CPUTuning(reuse_freed_memory=False).setup(on("cpu"), module, "fit")
    assert swapped() == 20
