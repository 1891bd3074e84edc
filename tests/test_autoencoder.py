import pytest, torch
import torch.nn.functional as F
from functools import partial
from torch import optim
from torch.utils.data import DataLoader, TensorDataset
from miniai.autoencoder import (FASHION_VAE, AutoencoderTrainCB, PerceptualLoss, adaptive_weight, fashion_autoencoder,
                                hinge_d_loss, load_vae, patch_discriminator, reconstruct, sharpness)
from miniai.callbacks import CheckpointCB
from miniai.data import DataLoaders, SAMPLE_DIR, load_fashion_mnist_idx, fashion_diffusion_tensors
from miniai.learner import Learner, Callback, CancelFitException
from miniai.networks import cnn_classifier


@pytest.fixture(scope='module')
def fashion():
    "Fashion-MNIST sample images in [-1, 1] (train, test)."
    xt, _, xv, _ = fashion_diffusion_tensors(load_fashion_mnist_idx(SAMPLE_DIR))
    return xt * 2, xv * 2


def test_perceptual_loss_is_a_frozen_distance():
    torch.manual_seed(0)
    loss = PerceptualLoss(cnn_classifier(nfs=(8, 16, 32, 64)))
    a, b = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    assert loss(a, a) == 0 and loss(a, b) > 0
    loss.train()
    assert not loss.training and not any(p.requires_grad for p in loss.parameters())
    a.requires_grad_()
    loss(a, b).backward()
    assert a.grad.abs().sum() > 0  # the gradient reaches the images, not the network


def test_discriminator_hinge_and_adaptive_weight():
    assert patch_discriminator()(torch.randn(3, 1, 32, 32)).shape == (3, 1, 6, 6)
    assert hinge_d_loss(torch.tensor([2.]), torch.tensor([-2.])) == 0
    assert hinge_d_loss(torch.tensor([0.]), torch.tensor([0.])) == 1
    w = torch.ones(5, requires_grad=True)
    torch.testing.assert_close(adaptive_weight((3 * w).sum(), (w ** 2).sum(), w), torch.tensor(1.5), atol=1e-3, rtol=0)


class StopAfterEpoch(Callback):
    order = CheckpointCB.order + 1
    def after_epoch(self, learn):
        if not learn.training: raise CancelFitException()


def test_training_resumes_exactly(tmp_path, fashion):
    xt, xv = fashion
    def run(cbs=()):
        torch.manual_seed(0)
        cb = AutoencoderTrainCB(PerceptualLoss(cnn_classifier(nfs=(8, 16, 32, 64))), patch_discriminator(nf=8), disc_start=2)
        dls = DataLoaders(DataLoader(TensorDataset(xt[:64], xt[:64]), 16, shuffle=True), DataLoader(TensorDataset(xv[:32], xv[:32]), 32))
        learn = Learner(fashion_autoencoder((16, 16)), dls, lr=1e-3, opt_func=partial(optim.Adam, betas=(0.5, 0.9)), cbs=[cb, *cbs])
        learn.fit(2)
        return learn, cb
    whole, whole_cb = run()
    assert whole_cb.n_steps == 8 and sum('d' in d for d in whole_cb.log) == 6  # the discriminator joined at step 2
    run([CheckpointCB(tmp_path / 'ck.pt'), StopAfterEpoch()])
    resumed, resumed_cb = run([CheckpointCB(tmp_path / 'ck.pt', resume=True)])
    assert resumed_cb.n_steps == 8 and len(resumed_cb.log) == 8
    for a, b in zip([*whole.model.parameters(), *whole_cb.disc.parameters()], [*resumed.model.parameters(), *resumed_cb.disc.parameters()]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_sharpness_falls_with_blur(fashion):
    x = fashion[1][:64]
    assert sharpness(F.avg_pool2d(x, 3, 1, 1)) < 0.7 * sharpness(x)


def test_shipped_fashion_vae(fashion):
    "The shipped autoencoder loads without a network and reconstructs the test images as its notebook says."
    from miniai.fid import ImageEval, load_fashion_evaluator
    xt, xv = fashion
    vae = load_vae(FASHION_VAE, device='cpu')
    assert vae.config._name_or_path == FASHION_VAE and not vae.training
    assert not any(p.requires_grad for p in vae.parameters())
    rec = reconstruct(vae, xv)
    assert rec.shape == xv.shape and vae.encode(xv[:2]).latent_dist.mean.shape == (2, 2, 8, 8)
    ie = ImageEval(load_fashion_evaluator(device='cpu')[:-1], xt / 2, device='cpu')
    assert ie.fid(rec.clamp(-1, 1) / 2) <= 2.0
    assert 0.8 <= sharpness(rec.clamp(-1, 1)) / sharpness(xv) <= 1.2


def test_load_vae_from_a_local_folder_and_offline(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    fashion_autoencoder((16, 16)).save_pretrained(tmp_path / 'tiny')
    vae = load_vae(str(tmp_path / 'tiny'), device='cpu')
    assert vae.config.block_out_channels == [16, 16] and not vae.training
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(OSError, match='nobody/no-such-vae: not available offline .*FASHION_VAE needs no network'):
        load_vae('nobody/no-such-vae')
    fallen = load_vae('nobody/no-such-vae', device='cpu', fallback=str(tmp_path / 'tiny'))  # said, then the fallback
    assert 'nobody/no-such-vae: not available offline' in capsys.readouterr().out
    assert fallen.config.block_out_channels == [16, 16]


def test_the_shipped_config_scales_latents_for_diffusers():
    "diffusers alone, as its pipelines scale latents (`* vae.config.scaling_factor`): unit variance on the test images."
    from diffusers import AutoencoderKL
    from miniai.autoencoder import FASHION_VAE_DIR
    vae = AutoencoderKL.from_pretrained(FASHION_VAE_DIR).eval()
    x = fashion_diffusion_tensors(load_fashion_mnist_idx(SAMPLE_DIR))[2][:512] * 2  # [-1, 1]
    with torch.no_grad(): z = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    assert abs(z.std().item() - 1) < 0.1
