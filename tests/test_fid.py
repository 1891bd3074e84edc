import numpy as np, pytest, scipy.linalg, torch
from miniai.fid import (ImageEval, fid_from_stats, feature_stats, kid_from_features, psd_sqrt, load_fashion_evaluator)
from miniai.data import fashion_diffusion_tensors
from miniai.data import load_fashion_mnist_idx, SAMPLE_DIR


def test_fid_matches_scipy():
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(500, 16, generator=g) @ torch.randn(16, 16, generator=g)
    f2 = torch.randn(400, 16, generator=g) + 0.3
    mu1, c1 = feature_stats(f1); mu2, c2 = feature_stats(f2)
    a, b = c1.numpy(), c2.numpy()
    expect = ((mu1 - mu2) ** 2).sum().item() + np.trace(a + b - 2 * scipy.linalg.sqrtm(a @ b).real)
    assert fid_from_stats(mu1, c1, mu2, c2).item() == pytest.approx(expect, rel=1e-6)
    assert fid_from_stats(mu1, c1, mu1, c1).item() == pytest.approx(0, abs=1e-6)


def test_psd_sqrt():
    a = torch.randn(6, 6, dtype=torch.float64); c = a @ a.T
    torch.testing.assert_close(psd_sqrt(c) @ psd_sqrt(c), c)


def test_kid_near_zero_for_same_distribution_and_positive_otherwise():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(600, 8, generator=g), torch.randn(600, 8, generator=g)
    assert abs(kid_from_features(a, b, n_subsets=10, subset_size=300)) < 0.05
    assert kid_from_features(a, b + 1, n_subsets=10, subset_size=300) > 0.5


def test_image_eval_batches_and_accepts_any_extractor():
    calls = []
    def extractor(x):
        calls.append(len(x))
        return x.flatten(1)[:, :4]
    ref = torch.randn(100, 1, 4, 4)
    ie = ImageEval(extractor, ref, bs=32, device='cpu')
    assert calls == [32, 32, 32, 4]
    assert ie.fid(ref) == pytest.approx(0, abs=1e-6)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ref), batch_size=50)
    assert ie.fid(loader) == pytest.approx(0, abs=1e-6)


def test_shipped_evaluator_classifies_test_set():
    xt, yt, xv, yv = fashion_diffusion_tensors(load_fashion_mnist_idx(SAMPLE_DIR))
    model = load_fashion_evaluator(device='cpu')
    with torch.no_grad(): acc = (model(xv).argmax(1) == yv).float().mean().item()
    assert acc > 0.85
    assert xv.shape[1:] == (1, 32, 32) and xv.min() >= -0.5 and xv.max() <= 0.5


def test_evaluator_fid_orders_damage():
    xt, _, xv, _ = fashion_diffusion_tensors(load_fashion_mnist_idx(SAMPLE_DIR))
    ie = ImageEval(load_fashion_evaluator(device='cpu')[:-1], xt, device='cpu')
    g = torch.Generator().manual_seed(0)
    noisy = lambda s: (xv + s * torch.randn(xv.shape, generator=g)).clamp(-0.5, 0.5)
    assert ie.fid(xv) < ie.fid(noisy(0.1)) < ie.fid(noisy(0.3))


def test_missing_weights_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothing.safetensors'): load_fashion_evaluator(tmp_path / 'nothing.safetensors')


def test_image_eval_uses_the_model_in_eval_mode():
    "A model handed over in training mode would take BatchNorm statistics from each batch: features would depend on it."
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten()).train()
    x = torch.randn(20, 1, 6, 6)
    ie = ImageEval(net, x, bs=7)
    assert not net.training
    torch.testing.assert_close(ie.features(x[:3]), ie.features(x)[:3])  # an item's features do not depend on its batch


def test_reference_from_dataloaders_is_the_whole_training_set():
    from torch.utils.data import DataLoader, TensorDataset
    from miniai.data import DataLoaders
    x = torch.randn(50, 3)
    ie = ImageEval(lambda b: b, x, bs=8, device='cpu')
    dls = DataLoaders(DataLoader(TensorDataset(x, torch.zeros(50)), 16, shuffle=True, drop_last=True), DataLoader(TensorDataset(x), 16))
    torch.testing.assert_close(ie.features(dls), x)  # all 50 items, in order: not 48 shuffled ones
