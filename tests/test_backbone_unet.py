import copy
import pytest, torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from miniai.backbone_unet import BackboneUNet, FreezeCB
from miniai.data import DataLoaders
from miniai.diffusion import diffusion_learner, noisify_collate
from miniai.networks import LatentResNet


def classifier():
    torch.manual_seed(0)
    return LatentResNet(n_in=2, n_out=10, nfs=(8, 16, 32), blocks=(1, 1))


def test_starts_as_the_classifier_body_and_predicts_zero():
    clf = classifier()
    with torch.no_grad():  # give the BatchNorm layers statistics, as a trained classifier has
        clf.train(); clf(torch.randn(16, 2, 8, 8) * 3 + 1)
    model = BackboneUNet(clf, attn_chans=8).eval(); clf.eval()
    x, t = torch.randn(3, 2, 8, 8), torch.tensor([0.01, 0.5, 0.99])
    with torch.no_grad():
        feats = model.down(x, model.embed(t))
        assert [f.shape[1:] for f in feats] == [(8, 8, 8), (16, 4, 4), (32, 2, 2)]
        assert torch.allclose(feats[-1], clf.body()(x), atol=1e-6)
        assert torch.equal(model(x, t), torch.zeros_like(x))
    assert model.stem is clf.stem  # shared, so the pretrained weights are the ones trained


def test_learns_to_use_the_noise_level():
    "The time modulation starts at zero (any t gives the classifier's features) and is learned: then t changes the output."
    torch.manual_seed(0)
    model = BackboneUNet(classifier(), attn_chans=8)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(5):
        x = torch.randn(16, 2, 8, 8)
        nn.functional.mse_loss(model(x, torch.rand(16)), torch.randn_like(x)).backward()
        opt.step(); opt.zero_grad()
    assert all(f.weight.abs().sum() > 0 for f in model.films)
    model.eval()
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        feats = [model.down(x, model.embed(torch.full((2,), t)))[-1] for t in (0.1, 0.9)]
    assert not torch.allclose(*feats)


def run(model, epochs, freeze, cbs=()):
    torch.manual_seed(0)
    z = torch.randn(32, 2, 8, 8)
    dls = DataLoaders(DataLoader(TensorDataset(z), 16, collate_fn=noisify_collate),
                      DataLoader(TensorDataset(z[:16]), 16, collate_fn=noisify_collate))
    body = nn.ModuleList([model.stem, model.stages])
    diffusion_learner(model, dls, lr=1e-3, epochs=epochs, precision='fp32', cbs=[FreezeCB(body, freeze), *cbs]).fit(epochs)


def test_freeze_keeps_the_weights_for_the_first_epochs_only():
    model = BackboneUNet(classifier(), attn_chans=8)
    stem, bn = model.stem.weight.detach().clone(), model.stages[0][0].convs[0][0].weight.detach().clone()
    run(model, 1, freeze=1)
    assert torch.equal(model.stem.weight, stem)  # frozen for the epoch
    assert not torch.equal(model.stages[0][0].convs[0][0].weight, bn)  # normalisation layers still train
    assert all(p.requires_grad for p in model.parameters())  # and everything is trainable after the fit
    run(model, 1, freeze=0)
    assert not torch.equal(model.stem.weight, stem)


def test_freeze_decides_from_the_epoch_number():
    class Learn: training, epoch = True, 0
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    cb, learn = FreezeCB(m, 2), Learn()
    cb.before_epoch(learn)
    assert not m[0].weight.requires_grad and m[1].weight.requires_grad
    learn.epoch = 3  # a resumed run past the frozen epochs trains everything from its first epoch
    cb.before_epoch(learn)
    assert m[0].weight.requires_grad
