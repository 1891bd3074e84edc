"The Karras samplers against k-diffusion's (the test-only oracle), and the conversions between the two conventions."
import importlib, importlib.util, math, sys, types
import pytest, torch
from torch import nn
from miniai.diffusion import DiscreteDenoiser, abar, sample_ddim, T_MAX
from miniai.karras import (t_to_sigma, sigma_to_t, sigmas_karras, EpsDenoiser, scalings, noisify_karras, PrecondDenoiser,
                           sample_euler, sample_euler_ancestral, sample_heun, sample_lms, sample_dpmpp_2m, lms_coeff,
                           sample_karras, draw_samples, SAMPLERS)


@pytest.fixture(scope='module')
def K():
    """k-diffusion's `sampling` module. Its package `__init__` imports its training stack (CLIP, kornia, wandb, ...); the
    samplers need only torch, scipy, torchsde and torchdiffeq, so the module is loaded without running `__init__`."""
    spec = importlib.util.find_spec('k_diffusion')
    assert spec is not None, 'the tests need k-diffusion: pip install --no-deps k-diffusion==0.1.1.post1'
    saved = sys.modules.get('k_diffusion')
    pkg = types.ModuleType('k_diffusion')
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules['k_diffusion'] = pkg
    try: yield importlib.import_module('k_diffusion.sampling')
    finally:
        for name in [n for n in sys.modules if n == 'k_diffusion' or n.startswith('k_diffusion.')]: del sys.modules[name]
        if saved is not None: sys.modules['k_diffusion'] = saved


class TinyNet(nn.Module):
    "A small random convolutional network taking `(x, t)`: a denoiser with no special structure."
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2, self.emb = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 1, 3, padding=1), nn.Linear(1, 8)
    def forward(self, x, t): return self.conv2(torch.tanh(self.conv1(x) + self.emb(t[:, None])[:, :, None, None]))


DENOISERS = {'exact': lambda: EpsDenoiser(DiscreteDenoiser([-0.5, 0., 0.5])),
             'eps network': lambda: EpsDenoiser(TinyNet()),
             'preconditioned network': lambda: PrecondDenoiser(TinyNet(), 0.33)}


@pytest.mark.parametrize('n,lo,hi,rho', [(10, 0.01, 80., 7.), (3, 0.002, 1., 3.), (50, 0.1, 14.6, 7.)])
def test_sigmas_karras(K, n, lo, hi, rho):
    torch.testing.assert_close(sigmas_karras(n, lo, hi, rho), K.get_sigmas_karras(n, lo, hi, rho))


@pytest.mark.parametrize('denoiser', DENOISERS)
@pytest.mark.parametrize('name', ['euler', 'heun', 'lms', 'dpmpp_2m'])
def test_deterministic_samplers_match_k_diffusion(K, name, denoiser):
    D = DENOISERS[denoiser]()
    sigmas = sigmas_karras(12)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    ours = {'euler': sample_euler, 'heun': sample_heun, 'lms': sample_lms, 'dpmpp_2m': sample_dpmpp_2m}[name]
    torch.testing.assert_close(ours(D, x, sigmas), getattr(K, f'sample_{name}')(D, x, sigmas, disable=True),
                               rtol=1e-4, atol=1e-4)  # float32 rounding, amplified by sigma at the start


@pytest.mark.parametrize('order', [1, 2, 3, 4])
def test_lms_orders_and_coefficients(K, order):
    D, sigmas = DENOISERS['exact'](), sigmas_karras(10)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    torch.testing.assert_close(sample_lms(D, x, sigmas, order), K.sample_lms(D, x, sigmas, order=order, disable=True),
                               rtol=1e-5, atol=1e-5)
    sig = sigmas.double().numpy()
    for i in range(order - 1, 9):
        for j in range(order): assert lms_coeff(order, sig.tolist(), i, j) == pytest.approx(K.linear_multistep_coeff(order, sig, i, j), rel=1e-4)


@pytest.mark.parametrize('denoiser', DENOISERS)
def test_stochastic_samplers_match_k_diffusion(K, denoiser):
    D, sigmas = DENOISERS[denoiser](), sigmas_karras(12)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    noise = lambda seed: (lambda g: lambda sigma, sigma_next: torch.randn(x.shape, generator=g))(torch.Generator().manual_seed(seed))
    torch.testing.assert_close(sample_euler_ancestral(D, x, sigmas, eta=0.7, noise_sampler=noise(1)),
                               K.sample_euler_ancestral(D, x, sigmas, eta=0.7, noise_sampler=noise(1), disable=True),
                               rtol=1e-5, atol=1e-5)
    churn = dict(s_churn=5., s_tmin=0.05, s_tmax=10., s_noise=1.003)
    torch.manual_seed(2); ours = sample_heun(D, x, sigmas, **churn)
    torch.manual_seed(2); theirs = K.sample_heun(D, x, sigmas, disable=True, **churn)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_sigma_and_time_convert_exactly():
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    for shift in (1., 2., 4.):
        torch.testing.assert_close(t_to_sigma(t, shift) ** 2, (1 - abar(t, shift)) / abar(t, shift), rtol=1e-9, atol=0)
        torch.testing.assert_close(sigma_to_t(t_to_sigma(t, shift), shift), t)


def test_eps_denoiser_is_the_posterior_mean():
    values = torch.tensor([-0.5, 0., 0.5])
    x, sigma = torch.randn(6, 1, 4, 4), torch.tensor([0.05, 0.2, 0.5, 1., 5., 40.])
    post = (-(x[..., None] - values) ** 2 / (2 * sigma.reshape(-1, 1, 1, 1, 1) ** 2)).softmax(-1)
    torch.testing.assert_close(EpsDenoiser(DiscreteDenoiser(values))(x, sigma), (post * values).sum(-1), rtol=0, atol=1e-4)


def test_ddim_eta_0_is_euler_over_its_levels():
    model, steps, shape = DiscreteDenoiser([-0.5, 0.5]), 10, (8, 1, 4, 4)
    ddim = sample_ddim(model, shape, steps=steps, eta=0., generator=torch.Generator().manual_seed(0))
    sig = t_to_sigma(torch.linspace(1, 0, steps + 1).clamp(max=T_MAX))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * (1 + sig[0] ** 2).sqrt()
    torch.testing.assert_close(sample_euler(EpsDenoiser(model), x, sig), ddim, rtol=0, atol=1e-4)


def test_preconditioning_targets_have_unit_variance_and_invert():
    x0 = torch.randn(4096, 1, 4, 4) * 0.3
    for level in (0.01, 0.3, 3., 80.):
        (_, t), target = noisify_karras(x0, 0.3, P_mean=math.log(level), P_std=0.)
        assert target.std().item() == pytest.approx(1., abs=0.02)
        torch.testing.assert_close(t_to_sigma(t), torch.full_like(t, level), rtol=1e-5, atol=0)
    (x_in, t), target = noisify_karras(x0[:8], 0.3, generator=torch.Generator().manual_seed(0))
    sigma = t_to_sigma(t)
    c_in = scalings(sigma, 0.3)[2]
    seen = {}
    def hits_target(x, t_in): seen.update(x=x, t=t_in); return target
    D = PrecondDenoiser(hits_target, 0.3)(x_in / c_in.reshape(-1, 1, 1, 1), sigma)
    torch.testing.assert_close(D, x0[:8], rtol=0, atol=1e-4)
    torch.testing.assert_close(seen['x'], x_in, rtol=0, atol=1e-5)
    torch.testing.assert_close(seen['t'], t, rtol=0, atol=1e-6)


@pytest.mark.parametrize('name', SAMPLERS)
def test_every_sampler_draws_the_data_and_a_seed_repeats(name):
    "Every entry of the registry, DDIM included, run by `draw_samples` on the exact noise predictor of two values."
    values = torch.tensor([-0.5, 0.5])
    draw = lambda: draw_samples(DiscreteDenoiser(values), (256, 1, 4, 4), name, 20, generator=torch.Generator().manual_seed(0))
    x = draw()
    assert ((x[..., None] - values).abs().min(-1).values < 0.02).float().mean() > 0.99
    assert 0.45 < (x > 0).float().mean() < 0.55
    torch.testing.assert_close(draw(), x)
    if SAMPLERS[name].solver is not None:  # a Karras sampler: `draw_samples` is `sample_karras` on its `EpsDenoiser`
        D = EpsDenoiser(DiscreteDenoiser(values))
        torch.testing.assert_close(sample_karras(D, (256, 1, 4, 4), name, 20, generator=torch.Generator().manual_seed(0)), x)


def test_unknown_sampler_and_options_are_named():
    with pytest.raises(ValueError, match="sampler='ddpm': pick one of ddim, euler, euler_a, heun, lms, dpmpp_2m"):
        sample_karras(EpsDenoiser(DiscreteDenoiser([0.])), (1, 1, 2, 2), 'ddpm')
    with pytest.raises(ValueError, match="sampler='ddim' steps in time"):
        sample_karras(EpsDenoiser(DiscreteDenoiser([0.])), (1, 1, 2, 2), 'ddim')
    with pytest.raises(ValueError, match="eta is for ddim and euler_a: lms does not take it"):
        draw_samples(DiscreteDenoiser([0.]), (1, 1, 2, 2), 'lms', 2, eta=0.)


def test_eps_denoiser_of_a_conditional_model_guides():
    from miniai.unet import EmbUNetModel
    from miniai.diffusion import guided_eps
    torch.manual_seed(0)
    model = EmbUNetModel(nfs=(8, 16), attn_chans=0, n_classes=10).eval()
    for p in model.parameters(): p.data.normal_(0, 0.1)
    x, sigma, c = torch.randn(4, 1, 8, 8), torch.tensor([0.1, 1., 5., 30.]), torch.tensor([0, 3, 3, 9])
    x_t, t = x / (1 + sigma[:, None, None, None] ** 2).sqrt(), sigma_to_t(sigma)
    for w in (1., 3.):
        eps = guided_eps(model, x_t, t, c, w)
        torch.testing.assert_close(EpsDenoiser(model, cond=c, guidance_scale=w)(x, sigma), x - sigma[:, None, None, None] * eps)
    assert not torch.allclose(EpsDenoiser(model, cond=c, guidance_scale=3.)(x, sigma), EpsDenoiser(model, cond=c)(x, sigma))
