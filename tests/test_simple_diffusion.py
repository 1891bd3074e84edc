import math, pytest, torch
import torch.nn.functional as F
from miniai.simple_diffusion import SimpleDiffusion, LearnEmbSS, EmbTransformerBlk
from miniai.diffusion import abar, inv_abar, noisify


@pytest.mark.parametrize('nfs, n_mids, size', [((8, 16), 1, 16), ((8, 16, 32), 3, 32), ((8, 8, 16, 32), 0, 32)])
def test_shapes(nfs, n_mids, size):
    torch.manual_seed(0)
    m = SimpleDiffusion(3, 2, nfs, attn_chans=8, n_mids=n_mids, img_size=size)
    x = torch.randn(2, 3, size, size)
    assert m(x, torch.rand(2)).shape == (2, 2, size, size)
    assert len(m.mids) == n_mids and m.le.scale.shape == ((size // 2 ** (len(nfs) - 1)) ** 2, nfs[-1])


def test_wrong_size_is_refused():
    m = SimpleDiffusion(1, 1, (8, 16), attn_chans=8, n_mids=1, img_size=16)
    with pytest.raises(ValueError, match='img_size=32'): m(torch.randn(1, 1, 32, 32), torch.rand(1))
    with pytest.raises(ValueError, match='does not halve'): SimpleDiffusion(nfs=(8, 16, 32), img_size=30)


def test_blocks_start_as_identity():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        torch.testing.assert_close(LearnEmbSS(16, 32)(x), x)
        torch.testing.assert_close(EmbTransformerBlk(64, 32, 8)(x, torch.randn(2, 64)), x)


def test_time_embedding_changes_the_output():
    torch.manual_seed(0)
    m = SimpleDiffusion(1, 1, (8, 16), attn_chans=8, n_mids=2, img_size=16).eval()
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.05 * torch.randn_like(p))
        x = torch.randn(4, 1, 16, 16)
        a, b = m(x, torch.full((4,), 0.1)), m(x, torch.full((4,), 0.9))
    assert (a - b).abs().mean() > 1e-4


def test_dropout_spares_the_highest_resolution():
    m = SimpleDiffusion(1, 1, (8, 16, 32), attn_chans=8, n_mids=2, dropout=0.3)
    assert all(r.dropout == 0 for r in m.downs[0].resnets) and all(r.dropout == 0 for r in m.ups[-1].resnets)
    assert all(r.dropout == 0.3 for b in (*m.downs[1:], *m.ups[:-1]) for r in b.resnets)
    assert all(b.dropout == 0.3 for b in m.mids)
    m.train()
    x, t = torch.randn(2, 1, 32, 32), torch.rand(2)
    for p in m.parameters(): p.data.add_(0.05 * torch.randn_like(p))
    assert not torch.equal(m(x, t), m(x, t))  # dropout is active in training
    m.eval()
    assert torch.equal(m(x, t), m(x, t))


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    m = SimpleDiffusion(1, 1, (8, 16), attn_chans=8, n_mids=2, img_size=8)
    (x, t), eps = noisify(torch.rand(8, 1, 8, 8) - 0.5)
    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    losses = []
    for _ in range(40):
        loss = F.mse_loss(m(x, t), eps); loss.backward(); opt.step(); opt.zero_grad(); losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_shifted_schedule():
    t = torch.linspace(0.01, 0.99, 99)
    logsnr = lambda a: (a / (1 - a)).log()
    for shift in (2., 4.):
        torch.testing.assert_close(logsnr(abar(t)) - logsnr(abar(t, shift)), torch.full_like(t, 2 * math.log(shift)),
                                   atol=1e-3, rtol=0)
        torch.testing.assert_close(inv_abar(abar(t, shift), shift), t, atol=1e-4, rtol=0)
    assert abar(torch.tensor(0.), 4.) == 1 and abar(torch.tensor(1.), 4.) < 1e-6
