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
