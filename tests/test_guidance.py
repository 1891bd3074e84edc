import pytest, torch
from miniai.unet import EmbUNetModel
from miniai.simple_diffusion import SimpleDiffusion
from miniai.diffusion import guided_eps, sample_ddim
from miniai.diffusion import drop_cond, noisify_cond_collate


def trained_like(model):
    "Perturb the zero-initialised layers so that the class and time change the output; eval mode (BatchNorm off batch stats)."
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(params=['unet', 'simple'])
def model(request):
    torch.manual_seed(0)
    if request.param == 'unet': return trained_like(EmbUNetModel(1, 1, (8, 16), attn_chans=8, n_classes=4))
    return trained_like(SimpleDiffusion(1, 1, (8, 16), attn_chans=8, n_mids=2, img_size=16, n_classes=4))


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 1, 16, 16, generator=g), torch.rand(6, generator=g), torch.tensor([0, 1, 2, 3, 0, 1])


@torch.no_grad()
def test_condition_changes_the_output_and_none_means_null(model):
    x, t, c = inputs()
    torch.testing.assert_close(model(x, t), model(x, t, torch.full_like(c, 4)))
    assert (model(x, t, c) - model(x, t, (c + 1) % 4)).abs().mean() > 1e-4


@torch.no_grad()
def test_guidance_scales(model):
    x, t, c = inputs()
    e_c, e_u = model(x, t, c), model(x, t, torch.full_like(c, 4))
    torch.testing.assert_close(guided_eps(model, x, t, c, 1.), e_c)
    torch.testing.assert_close(guided_eps(model, x, t, c, 0.), e_u)
    for w in (2., 7.5):  # the batched forward equals two separate ones
        torch.testing.assert_close(guided_eps(model, x, t, c, w), e_u + w * (e_c - e_u), atol=1e-5, rtol=1e-5)


def test_unconditional_model_refuses_a_class():
    m = EmbUNetModel(1, 1, (8, 16), attn_chans=8)
    with pytest.raises(ValueError, match='without n_classes'): m(torch.randn(2, 1, 8, 8), torch.rand(2), torch.zeros(2, dtype=torch.long))


def test_dropout_rate_is_honoured():
    g = torch.Generator().manual_seed(0)
    for p in (0., 0.1, 0.5, 1.):
        c = drop_cond(torch.randint(0, 10, (200_000,), generator=g), p, 10, g)
        assert abs((c == 10).float().mean().item() - p) < 0.005
    torch.manual_seed(0)
    batches = [noisify_cond_collate([(torch.zeros(1, 4, 4), 3)] * 1000, p_uncond=0.2) for _ in range(20)]
    cs = torch.cat([b[2] for b in batches])
    assert set(cs.tolist()) == {3, 10} and abs((cs == 10).float().mean().item() - 0.2) < 0.01


def test_img2img_at_strength_zero_returns_the_input(model):
    x0 = torch.rand(3, 1, 16, 16) - 0.5
    assert torch.equal(sample_ddim(model, x0.shape, steps=20, x_init=x0, strength=0.), x0)
    out = sample_ddim(model, x0.shape, steps=20, x_init=x0, strength=0.5, cond=torch.tensor([0, 1, 2]), guidance_scale=2.)
    assert out.shape == x0.shape and not torch.equal(out, x0)


def test_inpainting_keeps_the_known_region(model):
    x0 = torch.rand(3, 1, 16, 16) - 0.5
    mask = torch.zeros(1, 1, 16, 16); mask[..., 8:] = 1
    out = sample_ddim(model, x0.shape, steps=10, x_init=x0, mask=mask, cond=torch.tensor([0, 1, 2]), guidance_scale=3.)
    assert torch.equal(out[..., :8], x0[..., :8]) and not torch.equal(out[..., 8:], x0[..., 8:])
    with pytest.raises(ValueError, match='x_init'): sample_ddim(model, x0.shape, steps=2, mask=mask)
