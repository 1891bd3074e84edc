"""How much one seed decides 09_simple_diffusion's schedule-shift comparison: the notebook's shift runs (same models,
data, epochs, learning rate, sampler and scoring) repeated with other training and sampling seeds. Appends one row
per run to bench/results/shift_seeds.json (a rerun skips the rows already there), then prints the table.

    python bench/shift_seeds.py [--seeds 1] [--runs 32:0.25,0.5,1 64:0.5,1,2]
"""
import argparse, json, platform, time
from functools import partial
from pathlib import Path
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from miniai.core import set_seed, def_device
from miniai.data import DataLoaders, load_fashion_mnist, fashion_diffusion_tensors
from miniai.diffusion import noisify_collate, diffusion_learner, sample_ddim
from miniai.fid import load_fashion_evaluator, ImageEval
from miniai.simple_diffusion import SimpleDiffusion

MAKE = {32: lambda: SimpleDiffusion(nfs=(16, 32, 64), n_mids=6, attn_chans=16, img_size=32),  # as in the notebook
        64: lambda: SimpleDiffusion(nfs=(8, 16, 32, 64), n_mids=6, attn_chans=16, img_size=64)}
EPOCHS = {32: 5, 64: 15}


def run(size, shift, seed, data, ie, n_samples=300, bs=64, lr=2e-3):
    "Train the notebook's `size` model with `shift` from `seed`, sample with `seed`; FID and KID at 32x32."
    collate = partial(noisify_collate, shift=shift)
    dls = DataLoaders(*(DataLoader(TensorDataset(x), n, shuffle=s, drop_last=s, collate_fn=collate)
                        for x, n, s in zip(data[size], (bs, bs * 2), (True, False))))
    set_seed(seed)
    model = MAKE[size]()
    learn = diffusion_learner(model, dls, lr, EPOCHS[size])
    t0 = time.perf_counter()
    learn.fit(EPOCHS[size])
    secs = time.perf_counter() - t0
    x = sample_ddim(model.eval(), (n_samples, 1, size, size), steps=50, eta=1., clamp=(-0.5, 0.5), shift=shift,
               generator=torch.Generator(def_device).manual_seed(seed))
    x32 = F.avg_pool2d(x, 2) if size == 64 else x
    return dict(size=size, shift=shift, seed=seed, epochs=EPOCHS[size], train_s=secs, fid=ie.fid(x32), kid=ie.kid(x32))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[1])
    p.add_argument('--runs', nargs='+', default=['32:0.25,0.5,1', '64:0.5,1,2'], help='size:shift,shift,...')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'shift_seeds.json'))
    a = p.parse_args()
    out = Path(a.out)
    rows = json.loads(out.read_text())['runs'] if out.exists() else []
    xt, _, xv, _ = fashion_diffusion_tensors(load_fashion_mnist())
    data = {32: (xt, xv), 64: tuple(F.interpolate(x, scale_factor=2, mode='bilinear') for x in (xt, xv))}
    ie = ImageEval(load_fashion_evaluator()[:-1], xt)
    for spec in a.runs:
        size, shifts = spec.split(':')
        for seed in a.seeds:
            for shift in map(float, shifts.split(',')):
                if any(r['size'] == int(size) and r['shift'] == shift and r['seed'] == seed for r in rows): continue
                rows.append(run(int(size), shift, seed, data, ie))
                print(rows[-1], flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(),
                                           'cpu': platform.processor() or platform.machine(), 'runs': rows}, indent=1))
    print(f"\n{'size':>5}{'shift':>7}{'seed':>6}{'epochs':>7}{'train s':>9}{'FID':>8}{'KID':>9}")
    for r in sorted(rows, key=lambda r: (r['size'], r['shift'], r['seed'])):
        print(f"{r['size']:>5}{r['shift']:>7g}{r['seed']:>6}{r['epochs']:>7}{r['train_s']:9.0f}{r['fid']:8.2f}{r['kid']:9.4f}")


if __name__ == '__main__': main()
