"""The optimised hot paths give the values and gradients of the code they replaced.

The code before each optimisation is kept in ``benchmarks/reference.py`` (the
benchmarks time it beside the new code); these tests hold the two equal.
"""

import copy

import pytest
import torch

from benchmarks.reference import (
    box_sum_conv,
    local_ncc_autograd,
    ncc_loss_autograd,
    predict_contiguous,
    without_inplace_activations,
)
from src_training.metrics import get_metric, local_ncc
from src_training.metrics._common import _box_sum
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.networks.unet import UNet
from src_training.registration.inference import predict

SHAPES = {2: (2, 3, 17, 23), 3: (1, 2, 9, 12, 14)}
CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


def _image(shape, seed, dtype=torch.float64, flat=False):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(shape, generator=generator, dtype=dtype)
    if flat:  # a flat block, where the local variances are 0 (the clamp's kink)
        image[..., : shape[-1] // 2] = 0.25
    return image


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("radius", [0, 1, 4])
def test_box_sum_matches_the_grouped_convolution(ndim, radius):
    x = _image(SHAPES[ndim], 0).requires_grad_(True)
    upstream = _image(SHAPES[ndim], 1)
    new, old = _box_sum(x, radius), box_sum_conv(x, radius)
    torch.testing.assert_close(new, old, atol=1e-12, rtol=0)
    (grad_new,) = torch.autograd.grad((new * upstream).sum(), x)
    (grad_old,) = torch.autograd.grad((old * upstream).sum(), x)
    torch.testing.assert_close(grad_new, grad_old, atol=1e-12, rtol=0)


def test_box_sum_passes_gradcheck_and_gradgradcheck():
    x = _image((1, 2, 6, 7), 2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _box_sum(t, 2), (x,))
    assert torch.autograd.gradgradcheck(lambda t: _box_sum(t, 2), (x,))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("window", [3, 9])
def test_local_ncc_values_and_gradients_match_autograd(ndim, flat, window):
    warped = _image(SHAPES[ndim], 3).requires_grad_(True)
    fixed = _image(SHAPES[ndim], 4, flat=flat).requires_grad_(True)
    upstream = _image(SHAPES[ndim], 5)
    new = local_ncc(warped, fixed, window)
    old = local_ncc_autograd(warped, fixed, window)
    torch.testing.assert_close(new, old, atol=1e-12, rtol=0)
    grads_new = torch.autograd.grad((new * upstream).sum(), (warped, fixed))
    grads_old = torch.autograd.grad((old * upstream).sum(), (warped, fixed))
    for a, b in zip(grads_new, grads_old, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_ncc_loss_gradient_of_the_warped_image_alone_matches(ndim):
    """Training needs the gradient of the warped image only: the backward skips the fixed's."""
    warped = _image(SHAPES[ndim], 6, dtype=torch.float32).requires_grad_(True)
    fixed = _image(SHAPES[ndim], 7, dtype=torch.float32)
    new = get_metric("ncc")(warped, fixed)
    old = ncc_loss_autograd(warped, fixed)
    torch.testing.assert_close(new, old, rtol=1e-5, atol=1e-6)
    (grad_new,) = torch.autograd.grad(new, warped)
    (grad_old,) = torch.autograd.grad(old, warped)
    torch.testing.assert_close(grad_new, grad_old, rtol=1e-4, atol=1e-8)


def test_local_ncc_passes_gradcheck_in_both_images():
    warped = _image((1, 2, 7, 8), 8).requires_grad_(True)
    fixed = _image((1, 2, 7, 8), 9).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: local_ncc(a, b, 3), (warped, fixed))


def test_local_ncc_leaves_its_inputs_unchanged():
    warped, fixed = _image((1, 1, 12, 12), 10), _image((1, 1, 12, 12), 11)
    before = warped.clone(), fixed.clone()
    local_ncc(warped.requires_grad_(True), fixed, 5).sum().backward()
    torch.testing.assert_close((warped.detach(), fixed), before, atol=0, rtol=0)


# --- U-Net memory options: same numbers, fewer saved activations ---------------------------


def _saved_bytes(fn):
    """Bytes of the distinct storages autograd saves for the backward pass while ``fn`` runs."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    return out, sum(storages.values())


def _registration_loss(network, moving, fixed):
    disp = network(moving, fixed)
    return (disp * fixed.expand_as(disp)).square().mean() + disp.std()


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("option", ["out_of_place", "checkpointing"])
def test_unet_memory_options_keep_outputs_and_gradients(ndim, option):
    shape = (2, 1, *([12] * ndim)) if ndim == 2 else (1, 1, 9, 10, 11)
    moving, fixed = _image(shape, 12, torch.float32), _image(shape, 13, torch.float32)
    torch.manual_seed(0)
    fast = RegistrationNet(ndim, channels=(4, 8, 8))
    torch.nn.init.normal_(fast.unet.head.weight, std=0.1)  # a field far from zero
    slow = copy.deepcopy(fast)
    if option == "out_of_place":
        without_inplace_activations(slow)
    else:
        fast.unet.activation_checkpointing = True
    loss_fast, saved_fast = _saved_bytes(lambda: _registration_loss(fast, moving, fixed))
    loss_slow, saved_slow = _saved_bytes(lambda: _registration_loss(slow, moving, fixed))
    assert saved_fast < 0.8 * saved_slow
    torch.testing.assert_close(loss_fast, loss_slow, atol=0, rtol=0)
    loss_fast.backward()
    loss_slow.backward()
    for (name, a), b in zip(fast.named_parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-7, rtol=1e-5, msg=name)


def test_checkpointing_recomputes_dropout_and_batch_norm_alike():
    torch.manual_seed(1)
    plain = UNet(2, 1, 3, channels=(4, 8), batch_norm=True, dropout=0.3).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.activation_checkpointing = True
    x = _image((2, 1, 16, 16), 14, torch.float32)
    grads = []
    for network in (plain, checkpointed):
        torch.manual_seed(2)
        network(x).square().mean().backward()
        grads.append([p.grad for p in network.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-5)


def test_deepsim_features_keep_their_gradient_with_inplace_activations():
    torch.manual_seed(3)
    extractor = FeatureExtractor(2, channels=(4, 8, 8))
    reference = without_inplace_activations(copy.deepcopy(extractor))
    warped = _image((1, 1, 16, 16), 15, torch.float32)
    fixed = _image((1, 1, 16, 16), 16, torch.float32)
    grads = []
    for network in (extractor, reference):
        x = warped.clone().requires_grad_(True)
        get_metric("deepsim", extractor=network)(x, fixed).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=0, rtol=0)


# --- inference in channels-last layout ------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "fixed_frames"), [((5, 1, 20, 28), 1), ((3, 2, 20, 28), 3), ((2, 1, 9, 12, 10), 1)]
)
def test_predict_in_channels_last_layout_gives_the_same_displacements(shape, fixed_frames):
    ndim = len(shape) - 2
    moving = _image(shape, 17, torch.float32)
    fixed = _image((fixed_frames, *shape[1:]), 18, torch.float32)
    torch.manual_seed(4)
    network = RegistrationNet(ndim, in_channels=shape[1], channels=(4, 8, 8))
    torch.nn.init.normal_(network.unet.head.weight, std=0.1)
    first_conv = network.unet.encoder[0][0]
    layouts = []
    first_conv.register_forward_hook(
        lambda module, _args, out: layouts.append(
            module.weight.is_contiguous(memory_format=CHANNELS_LAST[ndim])
            and out.is_contiguous(memory_format=CHANNELS_LAST[ndim])
        )
    )
    new = predict(network, moving, fixed, batch_size=2)
    assert layouts == [True] * -(-shape[0] // 2)  # one forward pass per batch, channels-last
    assert first_conv.weight.is_contiguous() and new.is_contiguous()  # and back afterwards
    old = predict_contiguous(network, moving, fixed, batch_size=2)
    assert layouts[-1] is False  # the reference ran in the default layout
    torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 1, 24, 20), (1, 1, 10, 12, 9)])
def test_predict_in_bf16_runs_the_convolutions_in_bf16_and_stays_close(shape):
    ndim = len(shape) - 2
    moving, fixed = _image(shape, 19, torch.float32), _image(shape, 20, torch.float32)
    torch.manual_seed(5)
    network = RegistrationNet(ndim, channels=(8, 16, 16))
    torch.nn.init.normal_(network.unet.head.weight, std=0.1)
    dtypes = []
    network.unet.head.register_forward_hook(lambda _m, _a, out: dtypes.append(out.dtype))
    exact = predict(network, moving, fixed)
    fast = predict(network, moving, fixed, precision="bf16")
    assert dtypes == [torch.float32, torch.bfloat16]
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    assert not torch.equal(fast, exact)
    assert (fast - exact).abs().max() <= 0.02 * exact.abs().max()
