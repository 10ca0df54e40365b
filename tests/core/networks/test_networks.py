"""U-Net, registration net and feature extractor."""

import pytest
import torch

from src_training.networks.models import FeatureExtractor, RegistrationNet, segmentation_loss
from src_training.networks.unet import UNet

SMALL = (4, 8, 16)


@pytest.mark.parametrize(
    "shape", [(16, 16), (37, 51), (5, 7), (1, 9), (64, 33), (9, 10, 11), (8, 8, 8), (3, 17, 6)]
)
def test_any_size_round_trips_through_the_unet(shape):
    ndim = len(shape)
    net = UNet(ndim, 2, 3, channels=SMALL)
    out = net(torch.rand(2, 2, *shape))
    assert out.shape == (2, 3, *shape)


def test_encoder_features_are_at_halving_resolutions():
    net = FeatureExtractor(2, num_classes=3, channels=(4, 8, 16))
    feats = net.features(torch.rand(1, 1, 64, 48))
    assert [tuple(f.shape) for f in feats] == [(1, 4, 32, 24), (1, 8, 16, 12), (1, 16, 8, 6)]
    # the reference stage: conv k4 s2, LeakyReLU(0.2), conv k3, LeakyReLU(0.2); features
    # are taken after the last activation
    for stage in net.unet.encoder:
        down, act1, conv, act2 = stage
        assert (down.kernel_size, down.stride, conv.kernel_size) == ((4, 4), (2, 2), (3, 3))
        assert act1.negative_slope == act2.negative_slope == 0.2
        assert stage[-1] is act2


def test_padding_does_not_leak_into_the_valid_region_size():
    """Cropping back returns exactly the input grid, and the pad replicates the edge."""
    net = UNet(2, 1, 1, channels=SMALL)
    padded, shape = net._pad(torch.arange(15.0).view(1, 1, 3, 5))
    assert shape == (3, 5) and padded.shape[2:] == (8, 8)
    assert torch.equal(padded[0, 0, 7, :5], torch.arange(10.0, 15.0))


@pytest.mark.parametrize("ndim", [2, 3])
def test_registration_net_starts_near_identity(ndim):
    torch.manual_seed(0)
    net = RegistrationNet(ndim, channels=SMALL)
    x = torch.rand(2, 1, *([12] * ndim))
    disp = net(x, x.flip(0))
    assert disp.shape == (2, ndim, *([12] * ndim))
    assert disp.abs().max() < 1e-3


def test_diffeomorphic_net_integrates_its_velocity():
    torch.manual_seed(0)
    net = RegistrationNet(2, channels=SMALL, diffeomorphic=True, int_steps=4)
    with torch.no_grad():
        net.unet.head.bias.fill_(0.5)  # a constant velocity integrates to itself
    x = torch.rand(1, 1, 16, 16)
    disp = net(x, x)
    torch.testing.assert_close(disp, torch.full_like(disp, 0.5), atol=2e-3, rtol=0)


def test_registration_net_learns_a_translation():
    """A few Adam steps on an MSE loss move the field towards a known shift."""
    from src_training.spatial.transforms import warp

    torch.manual_seed(0)
    grid = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    fixed = (torch.sin(grid[0] / 3) + torch.cos(grid[1] / 4))[None, None]
    moving = torch.roll(fixed, 1, dims=3)  # moving(x) = fixed(x - 1): need u_1 = +1
    net = RegistrationNet(2, channels=SMALL)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(60):
        disp = net(moving, fixed)
        loss = (warp(moving, disp) - fixed).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    disp = net(moving, fixed).detach()
    assert disp[0, 1, 6:-6, 6:-6].mean() > 0.5
    assert disp[0, 0, 6:-6, 6:-6].abs().mean() < 0.3


def test_dimension_and_channel_mismatch_errors():
    net = RegistrationNet(2, channels=SMALL)
    with pytest.raises(ValueError, match="2D network but the input is 3D"):
        net(torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="1-channel"):
        net(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    fe = FeatureExtractor(3, channels=SMALL)
    with pytest.raises(ValueError, match="3D but the images are 2D"):
        fe.features(torch.rand(1, 1, 8, 8))


def test_config_rebuilds_the_same_architecture():
    net = RegistrationNet(3, channels=SMALL, diffeomorphic=True)
    clone = RegistrationNet(**net.config())
    clone.load_state_dict(net.state_dict())
    fe = FeatureExtractor(2, num_classes=4, channels=SMALL, kind="autoencoder")
    FeatureExtractor(**fe.config()).load_state_dict(fe.state_dict())


def test_segmentation_loss_is_low_for_correct_logits_and_dice_adds():
    labels = torch.randint(0, 3, (2, 1, 8, 8))
    good = 20 * torch.nn.functional.one_hot(labels[:, 0], 3).movedim(-1, 1).float()
    bad = good.roll(1, dims=1)
    assert segmentation_loss(good, labels) < 1e-6
    assert segmentation_loss(bad, labels) > 10
    assert segmentation_loss(bad, labels, dice_weight=1.0) > segmentation_loss(bad, labels) + 0.9


def test_autoencoder_has_no_skip_connections():
    """Without skips the output cannot copy the input: zeroing the features zeroes it."""
    ae = FeatureExtractor(2, kind="autoencoder", channels=SMALL)
    assert ae.unet.skip is False
    assert all(
        stage.convs[0].in_channels == stage_in
        for stage, stage_in in zip(ae.unet.decoder, [16, 8, 4], strict=True)
    )
    seg = FeatureExtractor(2, num_classes=2, channels=SMALL)
    assert seg.unet.decoder[-1].convs[0].in_channels == 4 + 1


def test_extractor_training_loss_needs_labels_for_segmentation():
    fe = FeatureExtractor(2, num_classes=2, channels=SMALL)
    with pytest.raises(ValueError, match="needs labels"):
        fe.training_loss(torch.rand(1, 1, 8, 8))
    ae = FeatureExtractor(2, kind="autoencoder", channels=SMALL)
    assert ae.training_loss(torch.rand(1, 1, 8, 8)).item() > 0
