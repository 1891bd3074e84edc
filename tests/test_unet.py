import pytest, torch
from torch import nn
import torch.nn.functional as F
from miniai.unet import EmbUNetModel, SelfAttention, timestep_embedding


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0., 0.5]), 16)
    assert e.shape == (2, 16)
    torch.testing.assert_close(e[0], torch.cat([torch.zeros(8), torch.ones(8)]))


def test_self_attention_matches_torch_mha():
    torch.manual_seed(0)
    sa, x = SelfAttention(48, 16), torch.randn(3, 7, 48)
    mha = nn.MultiheadAttention(48, 3, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(sa.qkv.weight); mha.in_proj_bias.copy_(sa.qkv.bias)
        mha.out_proj.weight.copy_(sa.proj.weight); mha.out_proj.bias.copy_(sa.proj.bias)
        torch.testing.assert_close(sa(x), mha(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='attn_chans'): SelfAttention(30, 16)


@pytest.mark.parametrize('nfs, attn_start', [((8, 16), 1), ((8, 16, 32), 1), ((8, 16, 16, 32), 2)])
def test_unet_shapes(nfs, attn_start):
    torch.manual_seed(0)
    m = EmbUNetModel(3, 3, nfs, attn_chans=8, attn_start=attn_start)
    x = torch.randn(2, 3, 16, 16)
    assert m(x, torch.rand(2)).shape == x.shape


def test_zero_init_and_time_matters():
    torch.manual_seed(0)
    m = EmbUNetModel(1, 1, (8, 16, 32), attn_chans=8)
    x = torch.randn(4, 1, 16, 16)
    assert m(x, torch.rand(4)).abs().max() == 0
    for p in m.parameters(): p.data.add_(0.05 * torch.randn_like(p))
    m.eval()
    a, b = m(x, torch.full((4,), 0.1)), m(x, torch.full((4,), 0.9))
    assert (a - b).abs().mean() > 1e-4


def test_unet_learns_a_fixed_batch():
    torch.manual_seed(0)
    m = EmbUNetModel(1, 1, (8, 16), attn_chans=8)
    x, t, eps = torch.randn(8, 1, 8, 8), torch.rand(8), torch.randn(8, 1, 8, 8)
    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    losses = []
    for _ in range(40):
        loss = F.mse_loss(m(x, t), eps); loss.backward(); opt.step(); opt.zero_grad(); losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
