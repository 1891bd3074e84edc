"""Simple diffusion against the U-Net on this machine, side by side in one run: training and sampling images/s at
32x32 (grey) and 64x64 (RGB), fp32 and bf16 autocast, at matched parameter counts; and how training time and FLOPs grow
with the number of transformer blocks (n_mids). Prints tables; writes bench/results/simple_diffusion.json.

    python bench/simple_diffusion.py [--bs 32] [--steps 3]
"""
import argparse, json, platform, time
from pathlib import Path
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from miniai.unet import EmbUNetModel
from miniai.simple_diffusion import SimpleDiffusion
from miniai.diffusion import noisify

MODELS = {  # the configurations of the 08_unet and 09_simple_diffusion notebooks
    'EmbUNetModel': lambda ch, size: EmbUNetModel(ch, ch, nfs=(16, 32, 64, 64), num_layers=1, attn_chans=16, attn_start=2),
    'SimpleDiffusion': lambda ch, size: SimpleDiffusion(ch, ch, nfs=(16, 32, 64) if size == 32 else (16, 32, 64, 64),
                                                        n_mids=10, attn_chans=16, img_size=size)}


def timed(f, n):
    f()
    t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t) / n


def train_step(model, bs, ch, size, dtype):
    "A closure running one AdamW training step, and its FLOPs."
    torch.manual_seed(0)
    (xt, t), eps = noisify(torch.rand(bs, ch, size, size) - 0.5)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bf16'):
            loss = F.mse_loss(model(xt, t).float(), eps)
        loss.backward(); opt.step(); opt.zero_grad()
    with FlopCounterMode(display=False) as fc: step()
    return step, fc.get_total_flops()


@torch.no_grad()
def forward_secs(model, bs, ch, size, dtype, n):
    model.eval()
    x, t = torch.randn(bs, ch, size, size), torch.rand(bs)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bf16'):
        secs = timed(lambda: model(x, t), n)
    model.train()
    return secs


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--steps', type=int, default=3, help='timed steps per row')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'simple_diffusion.json'))
    a = p.parse_args()
    rows = []
    for ch, size in ((1, 32), (3, 64)):
        for dtype in ('fp32', 'bf16'):
            for name, make in MODELS.items():
                torch.manual_seed(0)
                model = make(ch, size)
                step, flops = train_step(model, a.bs, ch, size, dtype)
                train_s, fwd_s = timed(step, a.steps), forward_secs(model, a.bs, ch, size, dtype, a.steps)
                rows.append(dict(model=name, size=f'{ch}x{size}x{size}', dtype=dtype, params=sum(p.numel() for p in model.parameters()),
                                 train_images_per_s=a.bs / train_s, sample_images_per_s=a.bs / fwd_s / 100,
                                 train_gflop_per_image=flops / a.bs / 1e9))
                print(rows[-1], flush=True)
    scaling = []
    for n_mids in (0, 4, 8, 16):
        torch.manual_seed(0)
        model = SimpleDiffusion(1, 1, (16, 32, 64), n_mids=n_mids, attn_chans=16, img_size=32)
        step, flops = train_step(model, a.bs, 1, 32, 'fp32')
        scaling.append(dict(n_mids=n_mids, params=sum(p.numel() for p in model.parameters()), ms_per_step=timed(step, a.steps) * 1e3,
                            train_gflop_per_image=flops / a.bs / 1e9))
    print(f"\nCPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"batch {a.bs}; sampling = 100 DDIM steps, images/s from the bare forward")
    print(f"{'model':16}{'size':>10}{'dtype':>6}{'params':>11}{'GFLOP/img':>10}{'train img/s':>12}{'sample img/s':>13}")
    for r in rows:
        print(f"{r['model']:16}{r['size']:>10}{r['dtype']:>6}{r['params']:>11,}{r['train_gflop_per_image']:10.3f}"
              f"{r['train_images_per_s']:12.1f}{r['sample_images_per_s']:13.2f}")
    print(f"\nSimpleDiffusion (16, 32, 64) at 1x32x32, fp32: cost of the transformer blocks")
    print(f"{'n_mids':>6}{'params':>11}{'GFLOP/img':>10}{'ms/step':>9}")
    for r in scaling: print(f"{r['n_mids']:>6}{r['params']:>11,}{r['train_gflop_per_image']:10.3f}{r['ms_per_step']:9.0f}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'batch_size': a.bs,
                                       'models': rows, 'n_mids_scaling': scaling}, indent=1))


if __name__ == '__main__': main()
