import pytest, torch
from miniai.networks import LatentResNet


def test_backbone_feature_maps():
    m = LatentResNet(n_out=10, nfs=(8, 16, 32, 64, 128), blocks=(1, 2, 1, 1)).eval()
    x = torch.randn(3, 4, 32, 32)
    feats = m.body()(x)
    assert feats.shape == (3, 128, 2, 2)
    assert m(x).shape == (3, 10)
    torch.testing.assert_close(m.head(feats), m(x))  # the head on the body's output is the whole model
    assert all(a is b for a, b in zip(m.body().parameters(), list(m.stem.parameters()) + list(m.stages.parameters())))
    assert LatentResNet(nfs=(8, 16, 32), blocks=(1, 1)).body()(x).shape == (3, 32, 8, 8)
    with pytest.raises(ValueError, match='one count per stage'): LatentResNet(nfs=(8, 16, 32), blocks=(1, 2, 3))


def test_latent_resnet_bn_head():
    m = LatentResNet(n_in=2, n_out=5, nfs=(8, 16), blocks=(1,), bn_head=True)
    assert isinstance(m.head[-1], torch.nn.BatchNorm1d) and m.head[-2].bias is None and m.nfs == (8, 16)
    assert m(torch.randn(4, 2, 8, 8)).shape == (4, 5)


def test_conv_bias_only_without_batchnorm():
    from torch import nn
    from miniai.networks import conv, cnn_classifier
    from functools import partial
    assert conv(1, 8, norm=nn.BatchNorm2d)[0].bias is None and conv(1, 8, norm=partial(nn.GroupNorm, 4))[0].bias is not None
    assert conv(1, 8)[0].bias is not None and conv(1, 8, norm=nn.BatchNorm2d, bias=True)[0].bias is not None
    assert all(m.bias is None for m in cnn_classifier().modules() if isinstance(m, nn.Conv2d))
