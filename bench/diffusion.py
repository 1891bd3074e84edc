"""Diffusion throughput on this machine, side by side in one run:
training images/s of miniai's EmbUNetModel against diffusers' UNet2DModel of similar size (fp32 and bf16 autocast, each
in the default and the channels_last memory format),
their achieved GFLOP/s against the measured matmul peaks, and the DDIM sampler's overhead over the bare model calls
(against a diffusers DDIMScheduler loop on the same model). Prints tables; writes bench/results/diffusion.json.

    python bench/diffusion.py [--bs 64] [--steps 5] [--sample-steps 25]
"""
import argparse, json, platform, time
from pathlib import Path
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from diffusers import UNet2DModel, DDIMScheduler
from miniai.unet import EmbUNetModel
from miniai.diffusion import sample, abar, noisify

UNET = dict(in_ch=1, out_ch=1, nfs=(16, 32, 64, 64), num_layers=1, attn_chans=16, attn_start=2)  # as in 08_unet


class DiffusersUNet(torch.nn.Module):
    "diffusers' UNet2DModel called as model(x_t, t), t in [0, 1]."
    def __init__(self):
        super().__init__()
        self.unet = UNet2DModel(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(16, 32, 64, 64),
                                layers_per_block=1, norm_num_groups=8, attention_head_dim=16,
                                down_block_types=('DownBlock2D', 'DownBlock2D', 'AttnDownBlock2D', 'AttnDownBlock2D'),
                                up_block_types=('AttnUpBlock2D', 'AttnUpBlock2D', 'UpBlock2D', 'UpBlock2D'))
    def forward(self, x, t): return self.unet(x, t * 1000).sample


def timed(f, n):
    f()
    t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t) / n


def matmul_peak(dtype, n):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n ** 3 / min(timed(lambda: a @ b, 1) for _ in range(3)) / 1e9


def train_row(name, model, bs, steps, dtype, channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x0 = torch.rand(bs, 1, 32, 32) - 0.5
    (xt, t), eps = noisify(x0)
    xt = xt.contiguous(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bf16'):
            loss = F.mse_loss(model(xt, t).float(), eps)
        loss.backward(); opt.step(); opt.zero_grad()
    with FlopCounterMode(display=False) as fc: step()
    secs = timed(step, steps)
    return {'model': name, 'dtype': dtype, 'channels_last': channels_last, 'params': sum(p.numel() for p in model.parameters()),
            'ms_per_step': secs * 1e3, 'images_per_s': bs / secs, 'gflop_per_image': fc.get_total_flops() / bs / 1e9, 'gflop_per_s': fc.get_total_flops() / secs / 1e9}


@torch.no_grad()
def sampler_rows(model, bs, steps):
    model.eval()
    x, t = torch.randn(bs, 1, 32, 32), torch.rand(bs)
    fwd = timed(lambda: [model(x, t) for _ in range(steps)], 1) / steps  # the bare model calls, as many as the sampler makes
    ours = timed(lambda: sample(model, (bs, 1, 32, 32), steps=steps, eta=1.), 1)
    T = 1000
    acp = abar(torch.arange(1, T + 1) / (T + 1)).double()
    sched = DDIMScheduler(num_train_timesteps=T, trained_betas=(1 - acp / torch.cat([acp.new_ones(1), acp[:-1]])).tolist(),
                          clip_sample=False, set_alpha_to_one=True)
    def diffusers_loop():
        sched.set_timesteps(steps)
        xs = torch.randn(bs, 1, 32, 32)
        for ts in sched.timesteps:
            eps = model(xs, (ts.float() + 1).expand(bs) / (T + 1))
            xs = sched.step(eps, ts, xs, eta=1.).prev_sample
        return xs
    theirs = timed(diffusers_loop, 1)
    return {'batch': bs, 'steps': steps, 'model_forward_ms': fwd * 1e3, 'miniai_sample_s': ours, 'diffusers_loop_s': theirs,
            'miniai_overhead': ours / (steps * fwd), 'diffusers_overhead': theirs / (steps * fwd)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--steps', type=int, default=5, help='timed training steps per fp32 row (bf16 rows: 2)')
    p.add_argument('--sample-steps', type=int, default=25)
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'diffusion.json'))
    a = p.parse_args()
    peaks = {'fp32': matmul_peak(torch.float32, 1024), 'bf16': matmul_peak(torch.bfloat16, 256)}
    rows = []
    for dtype in ('fp32', 'bf16'):
        for cl in (False, True):
            for name, make in (('miniai EmbUNetModel', lambda: EmbUNetModel(**UNET)), ('diffusers UNet2DModel', DiffusersUNet)):
                torch.manual_seed(0)
                rows.append(train_row(name, make(), a.bs, a.steps if dtype == 'fp32' else 2, dtype, cl))
    for r in rows: r['pct_of_matmul_peak'] = 100 * r['gflop_per_s'] / peaks[r['dtype']]
    torch.manual_seed(0)
    samp = sampler_rows(EmbUNetModel(**UNET), a.bs, a.sample_steps)
    print(f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"matmul peak fp32 {peaks['fp32']:.1f}, bf16 {peaks['bf16']:.2f} GFLOP/s; batch {a.bs}, 32x32x1")
    print(f"{'model':24}{'dtype':>6}{'ch_last':>8}{'params':>11}{'ms/step':>9}{'img/s':>8}{'GFLOP/img':>10}{'GFLOP/s':>9}{'% peak':>8}")
    for r in rows:
        print(f"{r['model']:24}{r['dtype']:>6}{str(r['channels_last']):>8}{r['params']:>11,}{r['ms_per_step']:9.0f}"
              f"{r['images_per_s']:8.1f}{r['gflop_per_image']:10.3f}{r['gflop_per_s']:9.1f}{r['pct_of_matmul_peak']:8.1f}")
    print(f"\nsampling {samp['batch']} images, {samp['steps']} DDIM steps: one forward {samp['model_forward_ms']:.1f} ms; "
          f"miniai sample {samp['miniai_sample_s']:.2f} s (x{samp['miniai_overhead']:.3f} of steps x forward); "
          f"diffusers DDIMScheduler loop {samp['diffusers_loop_s']:.2f} s (x{samp['diffusers_overhead']:.3f})")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'batch_size': a.bs,
                                       'matmul_peak_gflops': peaks, 'train': rows, 'sampler': samp}, indent=1))


if __name__ == '__main__': main()
