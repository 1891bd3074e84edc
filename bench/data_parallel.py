"""Data-parallel training with Accelerate: `miniai train`'s U-Net on the Fashion-MNIST sample, fp32, in one process and
in two (torchrun, gloo) at the same global batch, learning rate, epochs and seed. Reports training images/s of each and
both loss curves (per epoch, training and a validation loss on fixed noise), and writes bench/results/data_parallel.json.
On a CPU the two processes share its cores (each gets half the threads), so the ratio compares splitting the work (half
batches, a gradient all-reduce each step) with one process's own threading; with one GPU per process it is the scaling.

    python bench/data_parallel.py [--epochs 2] [--bs 64]
"""
import argparse, json, os, platform, subprocess, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from miniai.core import set_seed
from miniai.data import DataLoaders, load_fashion_mnist, fashion_diffusion_tensors
from miniai.diffusion import noisify, noisify_collate
from miniai.callbacks import one_cycle
from miniai.learner import Learner, Callback
from miniai.accel import AccelerateCB
from miniai.unet import EmbUNetModel
from miniai.runs import model_args


class Record(Callback):
    "Per-epoch mean training loss (over every process's items), seconds of training, and validation loss on fixed noise."
    order = 100
    def __init__(self, acc, valid): self.acc, self.valid, self.epochs = acc, valid, []
    def before_epoch(self, learn):
        if learn.training: self.losses, self.t0 = [], time.perf_counter()
    def after_loss(self, learn):
        if learn.training: self.losses.append(learn.loss.detach())
    def after_epoch(self, learn):
        if not learn.training: return
        secs = time.perf_counter() - self.t0
        (x_t, t), eps = self.valid
        with torch.no_grad(): valid = F.mse_loss(self.acc.unwrap_model(learn.model).eval()(x_t, t), eps).item()
        learn.model.train()
        train = self.acc.gather(torch.stack(self.losses).mean()[None]).mean().item()  # every process has as many batches
        self.epochs.append(dict(train_loss=train, valid_loss=valid, secs=secs))


def worker(a):
    "One process's share of the run; rank 0 writes the result to `a.out`."
    xt, _, xv, _ = fashion_diffusion_tensors(load_fashion_mnist(verbose=False))
    acc_cb = AccelerateCB(n_inp=2, cpu=True)
    acc = acc_cb.acc
    set_seed(0)
    model = EmbUNetModel(**model_args('unet', 1, 32))
    valid = noisify(xv[:512], generator=torch.Generator().manual_seed(1))
    set_seed(1 + acc.process_index)  # each process its own noise for its own items
    per_process = a.bs // acc.num_processes
    dl = DataLoader(TensorDataset(xt), per_process, shuffle=True, drop_last=True, collate_fn=noisify_collate)
    dls = DataLoaders(dl, dl)
    rec = Record(acc, valid)
    learn = Learner(model, dls, F.mse_loss, lr=a.lr, cbs=[acc_cb, one_cycle(a.lr, a.epochs, dls), rec])
    learn.fit(a.epochs, valid=False)
    if acc.is_main_process:
        Path(a.out).write_text(json.dumps(dict(processes=acc.num_processes, threads=torch.get_num_threads(),
                                               batch_per_process=per_process, steps_per_epoch=len(dl) // acc.num_processes,
                                               epochs=rec.epochs)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--bs', type=int, default=64, help='global batch size')
    p.add_argument('--lr', type=float, default=5e-3)
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'data_parallel.json'))
    a = p.parse_args()
    if a.worker: return worker(a)
    cores = torch.get_num_threads()
    runs = []
    for n in (1, 2):
        part = Path(a.out).with_suffix(f'.{n}.json')
        launch = [sys.executable] if n == 1 else [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n)]
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // n)))
        subprocess.run([*launch, __file__, '--worker', '--epochs', str(a.epochs), '--bs', str(a.bs), '--lr', str(a.lr),
                        '--out', str(part)], check=True, env=env)
        r = json.loads(part.read_text()); part.unlink()
        r['images_per_s'] = [r['steps_per_epoch'] * a.bs / e['secs'] for e in r['epochs']]
        runs.append(r)
    print(f"\nCPU {platform.processor() or platform.machine()}, {cores} threads in all, torch {torch.__version__}; "
          f"global batch {a.bs}, {a.epochs} epochs, fp32")
    print(f"{'processes':>9}{'threads':>8}{'batch each':>11}{'img/s (last epoch)':>19}" +
          ''.join(f"{f'train {i + 1}':>9}{f'valid {i + 1}':>9}" for i in range(a.epochs)))
    for r in runs:
        print(f"{r['processes']:>9}{r['threads']:>8}{r['batch_per_process']:>11}{r['images_per_s'][-1]:>19.1f}" +
              ''.join(f"{e['train_loss']:9.4f}{e['valid_loss']:9.4f}" for e in r['epochs']))
    print(f"two processes / one: {runs[1]['images_per_s'][-1] / runs[0]['images_per_s'][-1]:.2f}x images/s")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(torch=torch.__version__, cpu=platform.processor() or platform.machine(),
                                           global_batch=a.bs, runs=runs), indent=1))


if __name__ == '__main__': main()
