import math, pytest, torch
from torch import nn
import torch.nn.functional as F
from miniai.learner import (Learner, Callback, TrainCB, DeviceCB, MetricsCB, SingleBatchCB,
                            CancelFitException, CancelEpochException, CancelBatchException)
from torcheval.metrics import MulticlassAccuracy


class Events(Callback):
    def __init__(self): self.seen = []
    def __getattr__(self, name):
        if name.split('_')[0] in ('before', 'after', 'cleanup'): return lambda learn: self.seen.append(name)
        raise AttributeError(name)


def test_event_order(regression_dls):
    ev = Events()
    Learner(nn.Linear(3, 1), regression_dls, cbs=[TrainCB(), ev]).fit(1)
    batch = ['before_batch', 'before_predict', 'after_predict', 'before_loss', 'after_loss']
    train_batch = batch + ['before_backward', 'after_backward', 'before_step', 'after_step', 'after_batch', 'cleanup_batch']
    valid_batch = batch + ['after_batch', 'cleanup_batch']
    epoch = lambda b, n: ['before_epoch', *b * n, 'after_epoch', 'cleanup_epoch']
    assert ev.seen == ['before_fit', *epoch(train_batch, 4), *epoch(valid_batch, 2), 'after_fit', 'cleanup_fit']


def test_callbacks_run_in_order(regression_dls):
    seen = []
    class A(Callback):
        order = 5
        def before_fit(self, learn): seen.append('A')
    class B(Callback):
        order = -5
        def before_fit(self, learn): seen.append('B')
    Learner(nn.Linear(3, 1), regression_dls, cbs=[TrainCB(), A(), B()]).fit(1, train=False, valid=False)
    assert seen == ['B', 'A']


@pytest.mark.parametrize('exc, event, expect_absent, expect_present', [
    (CancelBatchException, 'after_loss', 'before_backward', 'after_fit'),
    (CancelEpochException, 'after_batch', 'after_epoch', 'after_fit'),
    (CancelFitException, 'after_batch', 'after_fit', 'cleanup_fit'),
])
def test_cancellation(regression_dls, exc, event, expect_absent, expect_present):
    class Cancel(Callback):
        order = -1
    def raise_(learn): raise exc()
    c = Cancel(); setattr(c, event, raise_)
    ev = Events()
    Learner(nn.Linear(3, 1), regression_dls, cbs=[TrainCB(), c, ev]).fit(2)
    assert expect_absent not in ev.seen and expect_present in ev.seen
    if exc is CancelFitException: assert ev.seen.count('before_batch') == 1


def test_cancel_epoch_goes_on_to_next_epoch(regression_dls):
    class StopEpoch(Callback):
        def after_batch(self, learn): raise CancelEpochException()
    ev = Events()
    Learner(nn.Linear(3, 1), regression_dls, cbs=[TrainCB(), StopEpoch(), ev]).fit(3, valid=False)
    assert ev.seen.count('before_batch') == 3 and ev.seen.count('cleanup_epoch') == 3


def test_exactly_one_trainer(regression_dls):
    with pytest.raises(ValueError, match='found none'):
        Learner(nn.Linear(3, 1), regression_dls).fit(1)
    with pytest.raises(ValueError, match='TrainCB, TrainCB'):
        Learner(nn.Linear(3, 1), regression_dls, cbs=[TrainCB(), TrainCB()]).fit(1)


def test_fit_cbs_are_temporary(regression_dls):
    learn = Learner(nn.Linear(3, 1), regression_dls, cbs=TrainCB())
    learn.fit(1, cbs=SingleBatchCB())
    assert [type(c) for c in learn.cbs] == [TrainCB]


def test_training_reduces_loss(regression_dls):
    torch.manual_seed(0)
    m = MetricsCB()
    Learner(nn.Linear(3, 1), regression_dls, F.mse_loss, lr=0.1, cbs=[TrainCB(), DeviceCB('cpu'), m]).fit(5)
    valid = [h['loss'] for h in m.history if h['train'] == 'eval']
    assert valid[-1] < valid[0] / 10


def test_metrics_weighted_by_batch_size():
    "A short last batch counts for the items it holds: the epoch loss is the mean over all items."
    x = torch.randn(10, 3); y = torch.randint(0, 4, (10,))
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)  # batches of 4, 4, 2
    from miniai.data import DataLoaders
    model = nn.Linear(3, 4)
    m = MetricsCB(acc=MulticlassAccuracy())
    Learner(model, DataLoaders(dl, dl), F.cross_entropy, cbs=[TrainCB(), m]).fit(1, train=False)
    with torch.no_grad(): preds = model(x)
    assert m.history[0]['loss'] == pytest.approx(F.cross_entropy(preds, y).item(), abs=1e-6)
    assert m.history[0]['acc'] == pytest.approx((preds.argmax(1) == y).float().mean().item())


def test_lr_finder_stops_on_divergence_and_restores_weights(regression_dls):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learn = Learner(model, regression_dls, F.mse_loss, cbs=TrainCB())
    finder = learn.lr_find(start_lr=1e-4, gamma=2., max_epochs=100, plot=False)
    last = finder.losses[-1]
    assert not math.isfinite(last) or last > 3 * min(finder.losses)
    assert len(finder.lrs) < 100 * 4, 'the finder should stop long before max_epochs'
    assert finder.lrs[1] == pytest.approx(2 * finder.lrs[0])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_summary_counts_params_and_flops(regression_dls):
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    s = Learner(model, regression_dls, cbs=TrainCB()).summary()
    assert s.params == 3 * 8 + 8 + 8 + 1
    assert s.rows[0][2] == (32, 8)
    assert s.mflops == pytest.approx(2 * (3 * 8 + 8 * 1) / 1e6)
    assert '| 0: Linear |' in str(s)


def test_progress_keeps_losses_on_the_device_until_it_shows_them(regression_dls):
    "Without a redraw due, no loss leaves the device (no sync per batch); every loss reaches the plot's list in the end."
    from miniai.learner import ProgressCB
    progress = ProgressCB(plot_every=1e9)
    class Pending(Callback):
        order = ProgressCB.order + 1
        def __init__(self): self.seen = []
        def after_batch(self, learn):
            if learn.training: self.seen.append(len(progress.pending))
    pending = Pending()
    Learner(nn.Linear(3, 1), regression_dls, F.mse_loss, cbs=[TrainCB(), MetricsCB(), progress, pending]).fit(2)
    assert pending.seen == [1, 2, 3, 4] * 2  # gathered only at each epoch's end
    assert len(progress.losses) == 8 and all(isinstance(v, float) for v in progress.losses)


def test_progress_counts_the_true_epochs_after_a_resume(regression_dls, tmp_path, capsys):
    from miniai.callbacks import CheckpointCB
    from miniai.learner import ProgressCB, CancelFitException
    class StopAfter(Callback):
        order = 100
        def after_epoch(self, learn):
            if learn.epoch == 2 and not learn.training: raise CancelFitException()
    path = tmp_path / 'ck.pt'
    def fit(*extra):
        m = MetricsCB()
        Learner(nn.Linear(3, 1), regression_dls, F.mse_loss, cbs=[TrainCB(), m, ProgressCB(), CheckpointCB(path, resume=True), *extra]).fit(5)
        return m
    fit(StopAfter())
    capsys.readouterr()
    m = fit()
    assert [d['epoch'] for d in m.history] == [3, 3, 4, 4]
    out = capsys.readouterr().out
    assert 'Epoch 4/5' in out and 'Epoch 1/' not in out
