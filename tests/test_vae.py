import pytest, torch
from torch.distributions import Normal, kl_divergence
from miniai.vae import VAE, MLPAutoencoder, kld_loss, bce_loss, vae_loss, reparameterize, FuncMetric


def test_kld_matches_torch_distributions():
    torch.manual_seed(0)
    mu, lv = torch.randn(16, 8) * 2, torch.randn(16, 8)
    expect = kl_divergence(Normal(mu, (0.5 * lv).exp()), Normal(0., 1.)).mean()
    torch.testing.assert_close(kld_loss((None, mu, lv)), expect)
    assert kld_loss((None, torch.zeros(4, 3), torch.zeros(4, 3))) == 0


def test_reparameterised_sample_has_requested_moments():
    torch.manual_seed(0)
    mu, lv = torch.tensor([-1., 3.]).expand(200_000, 2), torch.tensor([0., 2 * torch.tensor(0.2).log()]).expand(200_000, 2)
    z = reparameterize(mu, lv)
    torch.testing.assert_close(z.mean(0), torch.tensor([-1., 3.]), atol=0.01, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1., 0.2]), atol=0.01, rtol=0)


def test_reparameterisation_passes_gradients():
    mu, lv = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    reparameterize(mu, lv, eps=torch.ones(3)).sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(3)); torch.testing.assert_close(lv.grad, torch.full((3,), 0.5))


def test_shapes_and_dtypes_under_bf16_autocast():
    torch.manual_seed(0)
    x = torch.rand(8, 784)
    for model in (VAE(), MLPAutoencoder()):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model(x)
        if isinstance(model, VAE):
            logits, mu, lv = out
            assert logits.shape == (8, 784) and mu.shape == lv.shape == (8, 200)
            assert logits.dtype == mu.dtype == torch.bfloat16
            for f in (kld_loss, bce_loss, vae_loss): assert f(out, x).dtype == torch.float32
        else: assert out.shape == (8, 784) and out.dtype == torch.bfloat16


@pytest.mark.parametrize('lv_value', [-30., 30.])
def test_loss_finite_for_extreme_log_variance(lv_value):
    x = torch.rand(4, 784)
    mu, lv = torch.zeros(4, 200), torch.full((4, 200), lv_value)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        loss = vae_loss((torch.zeros(4, 784, dtype=dtype), mu.to(dtype), lv.to(dtype)), x)
        assert torch.isfinite(loss), (lv_value, dtype)


def test_func_metric_is_weighted_mean():
    m = FuncMetric(lambda inp, targ: (inp - targ).abs().mean())
    m.update(torch.ones(2), torch.zeros(2))      # mean 1 over 2 items
    m.update(torch.full((6,), 3.), torch.zeros(6))  # mean 3 over 6 items
    assert m.compute().item() == pytest.approx((2 * 1 + 6 * 3) / 8)
