import math, os, signal, pytest, torch
from torch import nn, optim
import torch.nn.functional as F
from miniai.learner import Learner, Callback, TrainCB, MetricsCB, CancelFitException
from miniai.callbacks import (CheckpointCB, NonFiniteLossCB, NonFiniteLossError, EMACB, ema_decay, one_cycle,
                              ActivationStats, RecorderCB, lr_of, save_atomic, StopOnSignalCB)
from miniai.networks import GeneralRelu, init_weights


def model_fn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))


def run(dls, path, n_epochs=4, extra=()):
    "Train with shuffling, dropout, one-cycle and EMA (everything that resuming must restore)."
    m = MetricsCB()
    learn = Learner(model_fn(), dls, F.mse_loss, lr=0.05, opt_func=optim.AdamW,
                    cbs=[TrainCB(), m, one_cycle(0.05, n_epochs, dls), EMACB(0.9), CheckpointCB(path, resume=True), *extra])
    learn.fit(n_epochs)
    return [d['loss'] for d in m.history], learn


class CrashAfter(Callback):
    order = 100
    def __init__(self, epoch): self.epoch = epoch
    def after_epoch(self, learn):
        if learn.epoch == self.epoch and not learn.training: raise CancelFitException()


def test_resume_gives_identical_losses(regression_dls, tmp_path):
    full, learn_full = run(regression_dls, tmp_path / 'a.pt')
    torch.manual_seed(123)  # a different RNG state before the resumed runs must not matter
    first, _ = run(regression_dls, tmp_path / 'b.pt', extra=[CrashAfter(1)])
    torch.manual_seed(456)
    resumed, learn_res = run(regression_dls, tmp_path / 'b.pt')
    assert len(first) == 4 and first + resumed == full
    for a, b in zip(learn_full.model.parameters(), learn_res.model.parameters()): assert torch.equal(a, b)
    for a, b in zip(learn_full.ema_model.parameters(), learn_res.ema_model.parameters()): assert torch.equal(a, b)


class SignalAt(Callback):
    "Send this process a SIGINT, as Ctrl-C does, at training batch `batch` of epoch `epoch`."
    def __init__(self, epoch, batch): self.epoch, self.batch = epoch, batch
    def after_batch(self, learn):
        if learn.training and (learn.epoch, learn.iter) == (self.epoch, self.batch): os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_mid_epoch_saves_and_resumes_to_the_same_weights(regression_dls, tmp_path):
    "Dropout, shuffling, one-cycle and EMA, stopped within an epoch by a signal: resumed, the weights of an unbroken run."
    _, learn_full = run(regression_dls, tmp_path / 'a.pt')
    _, learn_cut = run(regression_dls, tmp_path / 'b.pt', extra=[StopOnSignalCB(), SignalAt(1, 1)])
    assert learn_cut.stop_requested and signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    ck = torch.load(tmp_path / 'b.pt', weights_only=True)
    assert (ck['epoch'], ck['batches']) == (1, 2)
    torch.manual_seed(456)  # a different RNG state before the resumed run must not matter
    _, learn_res = run(regression_dls, tmp_path / 'b.pt')
    for a, b in zip(learn_full.model.parameters(), learn_res.model.parameters()): assert torch.equal(a, b)
    for a, b in zip(learn_full.ema_model.parameters(), learn_res.ema_model.parameters()): assert torch.equal(a, b)


def test_checkpoints_within_an_epoch_every_few_minutes(regression_dls, tmp_path):
    saved = []
    cb = CheckpointCB(tmp_path / 'c.pt', minutes=0)  # every batch
    cb_save = cb.save
    cb.save = lambda learn, batches=None: (saved.append((learn.epoch, batches)), cb_save(learn, batches))
    Learner(model_fn(), regression_dls, F.mse_loss, cbs=[TrainCB(), cb]).fit(2)
    assert saved == [(0, 1), (0, 2), (0, 3), (0, 4), (0, None), (1, 1), (1, 2), (1, 3), (1, 4), (1, None)]


def test_checkpoint_every_and_at_end(regression_dls, tmp_path):
    saved = []
    cb = CheckpointCB(tmp_path / 'c.pt', every=2)
    cb_save = cb.save
    cb.save = lambda learn: (saved.append(learn.epoch), cb_save(learn))
    Learner(model_fn(), regression_dls, F.mse_loss, cbs=[TrainCB(), cb]).fit(5)
    assert saved == [1, 3, 4]
    assert torch.load(tmp_path / 'c.pt', weights_only=True)['epoch'] == 4


def test_crash_during_save_keeps_previous_checkpoint(regression_dls, tmp_path, monkeypatch):
    path = tmp_path / 'ck.pt'
    run(regression_dls, path, n_epochs=2)
    before = torch.load(path, weights_only=True)
    def broken_save(obj, f):
        f.write(b'half a checkpoint')
        raise OSError('disk full')
    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'): save_atomic({'x': 1}, path)
    monkeypatch.undo()
    after = torch.load(path, weights_only=True)
    assert after['epoch'] == before['epoch'] == 1
    assert all(torch.equal(after['model'][k], v) for k, v in before['model'].items())


def test_unreadable_checkpoint_is_named(regression_dls, tmp_path):
    path = tmp_path / 'bad.pt'
    path.write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='bad.pt: cannot load'):
        Learner(model_fn(), regression_dls, F.mse_loss, cbs=[TrainCB(), CheckpointCB(path, resume=True)]).fit(1)


def test_resuming_is_asked_for(regression_dls, tmp_path):
    path = tmp_path / 'ck.pt'
    Learner(model_fn(), regression_dls, F.mse_loss, cbs=[TrainCB(), CheckpointCB(path)]).fit(2)
    m = MetricsCB()
    Learner(model_fn(), regression_dls, F.mse_loss, cbs=[TrainCB(), m, CheckpointCB(path)]).fit(2)
    assert [d['epoch'] for d in m.history] == [0, 0, 1, 1]  # a fresh run, though a checkpoint was there


def test_non_finite_guard(regression_dls, tmp_path):
    class Poison(Callback):
        def before_batch(self, learn):
            if learn.training and learn.epoch == 1 and learn.iter == 2: learn.batch = (learn.batch[0] * math.inf, learn.batch[1])
    model = model_fn()
    path = tmp_path / 'g.pt'
    learn = Learner(model, regression_dls, F.mse_loss, lr=0.01, cbs=[TrainCB(), NonFiniteLossCB(), CheckpointCB(path), Poison()])
    with pytest.raises(NonFiniteLossError, match='epoch 1, batch 2'): learn.fit(3)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    ck = torch.load(path, weights_only=True)
    assert ck['epoch'] == 0 and all(torch.isfinite(v).all() for v in ck['model'].values())


def test_ema_maths():
    "EMACB equals ema = d*ema + (1-d)*w with d = min(decay, (1+n)/(warmup+n)), n counting updates."
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    ws = []
    class Rec(Callback):
        order = 20
        def after_step(self, learn): ws.append(learn.model.weight.detach().clone())
    x = torch.randn(32, 2); y = x.sum(1, keepdim=True)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    from miniai.data import DataLoaders
    ema = EMACB(decay=0.8, warmup=4)
    Learner(model, DataLoaders(dl, dl), F.mse_loss, lr=0.1, cbs=[TrainCB(), ema, Rec()]).fit(1, valid=False)
    expect = ws[0]
    for n, w in enumerate(ws[1:], 1):
        d = min(0.8, (1 + n) / (4 + n))
        expect = d * expect + (1 - d) * w
    torch.testing.assert_close(ema.ema.module.weight, expect)
    assert ema_decay(0, 0.999, 10) == pytest.approx(0.1) and ema_decay(10**6, 0.999, 10) == 0.999


def test_ema_copies_integer_buffers():
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    ema = EMACB()
    x = torch.randn(16, 2)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x[:, :1]), batch_size=4)
    from miniai.data import DataLoaders
    Learner(model, DataLoaders(dl, dl), lambda p, t: p.mean(), cbs=[TrainCB(), ema]).fit(1, valid=False)
    assert ema.ema.module[1].num_batches_tracked == model[1].num_batches_tracked == 4


def test_recorder_and_one_cycle(regression_dls):
    rec = RecorderCB(lr=lr_of)
    Learner(model_fn(), regression_dls, F.mse_loss, opt_func=optim.AdamW,
            cbs=[TrainCB(), one_cycle(0.1, 3, regression_dls), rec]).fit(3)
    lrs = rec.recs['lr']
    assert len(lrs) == 3 * len(regression_dls.train)
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) <= 0.1 and lrs[-1] < lrs[0]


def test_activation_stats_see_collapse():
    "With default init and many ReLU layers, activation std falls layer by layer; Kaiming init keeps it."
    def net(init):
        torch.manual_seed(0)
        m = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.ReLU()) for _ in range(8)])
        if init: m.apply(init_weights)
        return m
    x = torch.randn(256, 64)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x), batch_size=64)
    from miniai.data import DataLoaders
    stds = {}
    for init in (False, True):
        stats = ActivationStats(mod_filter=lambda m: isinstance(m, nn.ReLU))
        Learner(net(init), DataLoaders(dl, dl), F.mse_loss, lr=0., cbs=[TrainCB(), stats]).fit(1, valid=False)
        stds[init] = [h.stats[1][0] for h in stats]
        assert len(stats.hooks) == 8 and len(stats.hooks[0].stats[2]) == 4
    assert stds[False][-1] < 0.25 * stds[False][0]
    assert stds[True][-1] > 0.5 * stds[True][0]


def test_general_relu():
    x = torch.tensor([-2., 0., 3.])
    torch.testing.assert_close(GeneralRelu(leak=0.1, sub=0.4, maxv=2.)(x), torch.tensor([-0.6, -0.4, 2.]))
