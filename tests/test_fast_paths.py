"""The optimised hot paths give the values and gradients of the code they replaced.

The code before each optimisation is kept in ``benchmarks/reference.py`` (the
benchmarks time it beside the new code); these tests hold the two equal.
"""

import pytest
import torch

from benchmarks.reference import box_sum_conv, local_ncc_autograd, ncc_loss_autograd
from src_training.metrics import get_metric, local_ncc
from src_training.metrics._common import _box_sum

SHAPES = {2: (2, 3, 17, 23), 3: (1, 2, 9, 12, 14)}


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
