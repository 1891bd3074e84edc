"""Trained by tests/test_accel.py under `torchrun --nproc_per_node 2`: each process writes what it saw and its final weights,
then trains again with checkpoints (whole, and stopped after one epoch then resumed) and writes those weights and how many
checkpoint files it wrote."""
import json, os
from pathlib import Path
import torch
from torch import nn
import torch.nn.functional as F
import miniai.callbacks
from miniai.callbacks import CheckpointCB, one_cycle
from miniai.learner import Learner, Callback, CancelFitException
from miniai.accel import AccelerateCB
from miniai.data import DataLoaders


def make_data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    x[:, 0] = torch.arange(n) / n  # the first feature names the item, so each process can say which it saw
    return x, x @ torch.tensor([[1.], [-1.], [2.], [0.5]])


def make_model():
    torch.manual_seed(0)
    return nn.Linear(4, 1)


class StopAfterFirst(Callback):
    order = 100  # after the checkpoint is written
    def after_epoch(self, learn):
        if learn.epoch == 0: raise CancelFitException()


def checkpointed(dl, path, extra=(), resume=False):
    "Three epochs of Adam (whose state a resume must restore) with a checkpoint after each; the final weights."
    learn = Learner(make_model(), DataLoaders(dl, dl), F.mse_loss, lr=0.05, opt_func=torch.optim.Adam,
                    cbs=[AccelerateCB(cpu=True), CheckpointCB(path, resume=resume), *extra])
    learn.fit(3, valid=False)
    return learn.model.weight.detach().tolist()


class Seen(Callback):
    def before_fit(self, learn): self.items = []
    def before_batch(self, learn):
        if learn.training: self.items += (learn.batch[0][:, 0] * 64).round().long().tolist()


if __name__ == '__main__':
    x, y = make_data()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)  # 8 per process, 16 in all
    acc_cb, seen, dls = AccelerateCB(cpu=True), Seen(), DataLoaders(dl, dl)
    learn = Learner(make_model(), dls, F.mse_loss, lr=0.1, cbs=[acc_cb, seen, one_cycle(0.1, 3, dls)])  # over each one's 4 batches
    learn.fit(3, valid=False)
    rank = acc_cb.acc.process_index
    out = {'num_processes': acc_cb.acc.num_processes, 'seen': sorted(set(seen.items)),
           'weight': learn.model.weight.detach().tolist()}
    writes, save = [], miniai.callbacks.save_atomic
    miniai.callbacks.save_atomic = lambda obj, path: (writes.append(str(path)), save(obj, path))
    ck = Path(os.environ['MINIAI_OUT'])
    out['whole'] = checkpointed(dl, ck / 'whole.pt')
    checkpointed(dl, ck / 'cut.pt', [StopAfterFirst()])
    out['resumed'] = checkpointed(dl, ck / 'cut.pt', resume=True)
    out['checkpoint_writes'] = len(writes)
    Path(os.environ['MINIAI_OUT'], f'rank{rank}.json').write_text(json.dumps(out))
