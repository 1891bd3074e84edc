"""Diffusion throughput on this machine, side by side in one run:
training images/s of miniai's EmbUNetModel against diffusers' UNet2DModel of similar size (fp32, and bf16 autocast where
the CPU has native bf16; each in the default and the channels_last memory format), their achieved GFLOP/s against the
measured matmul peaks, and the share of a step spent in convolution kernels (by the profiler), with the images/s that
would allow were every other op free: no change to the ops around the convolutions can pass that ceiling; and drawing a
batch with DDIM: miniai's `sample_ddim` against its bare model calls (the sampler's overhead) and against diffusers'
DDIMPipeline with its matched UNet2DModel. Prints tables; writes bench/results/diffusion_<the CPU's widest flag>.json
(diffusion_avx2.json, diffusion_avx512_bf16.json, ...).

    python bench/diffusion.py [--bs 64] [--steps 5] [--sample-steps 50] [--repeats 3]
"""
import argparse, json, platform, time
from functools import partial
from pathlib import Path
import torch
import torch.nn.functional as F
from torch.autograd.profiler_legacy import profile  # the kineto profiler logs to stderr at every use
from torch.utils.flop_counter import FlopCounterMode
from diffusers import DDIMPipeline, DDIMScheduler
from miniai.unet import EmbUNetModel, DiffusersUNet
from miniai.accel import native_amp_dtype
from miniai.diffusion import sample_ddim, noisify

UNET = dict(in_ch=1, out_ch=1, nfs=(16, 32, 64, 64), num_layers=1, attn_chans=16, attn_start=2)  # as in 08_unet


def timed(f, n):
    f()
    t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t) / n


def matmul_peak(dtype, n):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n ** 3 / min(timed(lambda: a @ b, 1) for _ in range(3)) / 1e9


def interleaved(jobs, rounds, n=1):
    """The fastest of `rounds` timings (seconds per call, `n` calls each) of every function in the dict `jobs`, after one
    untimed call each. The jobs take turns within a round, so a busy moment of the machine hits one round of one job,
    not a ratio between jobs."""
    for f in jobs.values(): f()
    secs = {k: [] for k in jobs}
    for _ in range(rounds):
        for k, f in jobs.items():
            t0 = time.perf_counter()
            for _ in range(n): f()
            secs[k].append((time.perf_counter() - t0) / n)
    return {k: min(v) for k, v in secs.items()}


def train_step(model, bs, dtype, channels_last):
    "A training step of `model` on a fixed noised batch, and its FLOPs."
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    (xt, t), eps = noisify(torch.rand(bs, 1, 32, 32) - 0.5)
    xt = xt.contiguous(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=dtype == 'bf16'):
            loss = F.mse_loss(model(xt, t).float(), eps)
        loss.backward(); opt.step(); opt.zero_grad()
    with FlopCounterMode(display=False) as fc: step()
    return step, fc.get_total_flops()


def train_rows(bs, steps, rounds, dtypes):
    """Training images/s of both models in each of `dtypes`, contiguous and channels_last: the fastest of `rounds` rounds
    of `steps` steps (bf16 rows: 2 steps), the eight setups taking turns."""
    setups = {(name, dtype, cl): (make, dtype, cl) for dtype in dtypes for cl in (False, True)
              for name, make in (('miniai EmbUNetModel', lambda: EmbUNetModel(**UNET)), ('diffusers UNet2DModel', DiffusersUNet))}
    rows, jobs = {}, {}
    for k, (make, dtype, cl) in setups.items():
        torch.manual_seed(0)
        model = make()
        jobs[k], flops = train_step(model, bs, dtype, cl)
        rows[k] = {'model': k[0], 'dtype': dtype, 'channels_last': cl, 'params': sum(p.numel() for p in model.parameters()),
                   'flops': flops, 'conv_share': conv_share(jobs[k])}
    for dtype in dtypes:
        best = interleaved({k: f for k, f in jobs.items() if k[1] == dtype}, rounds, steps if dtype == 'fp32' else 2)
        for k, secs in best.items():
            r, flops = rows[k], rows[k].pop('flops')
            r.update(ms_per_step=secs * 1e3, images_per_s=bs / secs, gflop_per_image=flops / bs / 1e9, gflop_per_s=flops / secs / 1e9,
                     images_per_s_convs_alone=bs / secs / r['conv_share'])
    return list(rows.values())


def conv_share(f, n=2, rounds=3):
    """The share of the time of a call of `f` spent inside convolution kernels (forward and backward, the profiler's self
    times), in the fastest of `rounds` profiled runs of `n` calls after one untimed call. Were every other op free, the
    call would run 1 / share times as fast: the ceiling that this PyTorch's convolution kernels put on the model. A share
    within one run holds while the machine's speed drifts between runs."""
    f()
    def once():
        with profile() as prof:
            t0 = time.perf_counter()
            for _ in range(n): f()
            wall = time.perf_counter() - t0
        return wall, sum(e.self_cpu_time_total for e in prof.key_averages() if 'convolution' in e.key) / 1e6
    wall, conv = min(once() for _ in range(rounds))
    return conv / wall


class ZeroModel(torch.nn.Module):
    "A noise predictor that predicts zeros, at no cost: `sample_ddim` with it times the sampler's own work."
    def forward(self, x, t): return torch.zeros_like(x)


@torch.no_grad()
def sampler_rows(bs, steps, repeats):
    """Seconds to draw `bs` images with `steps` DDIM steps (eta 1): miniai's `sample_ddim` and the bare calls of its model, and
    diffusers' DDIMPipeline with its matched UNet2DModel, each model contiguous and channels_last; the fastest of
    `repeats` interleaved rounds; and the share of a model call's time in its convolutions, with the images/s that
    would allow were all else free. The sampler's own work (its loop with `ZeroModel`) is timed apart too: the ratio of two
    timings of the full sampler and its bare model calls moves by several percent from round to round on a shared machine,
    more than the loop costs."""
    torch.manual_seed(0)
    ours, theirs = EmbUNetModel(**UNET).eval(), DiffusersUNet().eval()
    pipe = DDIMPipeline(unet=theirs.unet, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    x, t, shape = torch.randn(bs, 1, 32, 32), torch.rand(bs), (bs, 1, 32, 32)
    def bare(fmt): return [ours.to(memory_format=fmt)(x, t) for _ in range(steps)]
    def miniai(fmt): return sample_ddim(ours.to(memory_format=fmt), shape, steps=steps, eta=1.)
    def diffusers(fmt):
        pipe.unet.to(memory_format=fmt)
        return pipe(batch_size=bs, num_inference_steps=steps, eta=1., output_type='np')
    best = interleaved({(name, cl): partial(f, torch.channels_last if cl else torch.contiguous_format) for cl in (False, True)
                        for name, f in (('bare model calls', bare), ('miniai sample', miniai), ('diffusers DDIMPipeline', diffusers))},
                       repeats)
    loop = min(timed(partial(sample_ddim, ZeroModel(), shape, steps=steps, eta=1.), 1) for _ in range(10 * repeats))
    rows = [{'job': name, 'channels_last': cl, 'images': bs, 'steps': steps, 'seconds': s, 'images_per_s': bs / s}
            for (name, cl), s in best.items()]
    for r in rows:
        if r['job'] != 'bare model calls':
            model = ours if r['job'] == 'miniai sample' else theirs
            model.to(memory_format=torch.channels_last if r['channels_last'] else torch.contiguous_format)
            r['conv_share'] = conv_share(partial(model, x, t))
            r['images_per_s_convs_alone'] = r['images_per_s'] / r['conv_share']
    for r in rows:
        bare_s = best[('bare model calls', r['channels_last'])]
        r['over_bare_calls'] = r['seconds'] / bare_s if r['job'] == 'miniai sample' else None
        r['loop_over_bare_calls'] = 1 + loop / bare_s if r['job'] == 'miniai sample' else None
    return rows, loop


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--steps', type=int, default=5, help='training steps per timed round, fp32 (bf16: 2)')
    p.add_argument('--sample-steps', type=int, default=50)
    p.add_argument('--repeats', type=int, default=3, help='timed rounds of the training and of the sampling jobs')
    p.add_argument('--out', default=None, help='JSON file (default: results/diffusion_<widest CPU flag>.json)')
    a = p.parse_args()
    caps = torch.cpu.get_capabilities()
    flags = [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if caps.get(f)]
    out = Path(a.out or Path(__file__).parent / 'results' / f"diffusion_{flags[-1] if flags else platform.machine()}.json")
    dtypes = ['fp32'] + (['bf16'] if native_amp_dtype('cpu') else [])  # bf16 without native support is emulated: 10-100x slower
    peaks = {d: matmul_peak(*{'fp32': (torch.float32, 1024), 'bf16': (torch.bfloat16, 256)}[d]) for d in dtypes}
    rows = train_rows(a.bs, a.steps, a.repeats, dtypes)
    for r in rows: r['pct_of_matmul_peak'] = 100 * r['gflop_per_s'] / peaks[r['dtype']]
    samp, loop = sampler_rows(a.bs, a.sample_steps, a.repeats)
    print(f"CPU flags {', '.join(flags)}; {torch.get_num_threads()} threads, torch {torch.__version__}; matmul peak "
          + ', '.join(f'{d} {v:.1f}' for d, v in peaks.items()) + f" GFLOP/s; batch {a.bs}, 32x32x1"
          + ('' if 'bf16' in dtypes else '; no bf16 rows: this CPU has no native bf16'))
    print(f"{'model':24}{'dtype':>6}{'ch_last':>8}{'params':>11}{'ms/step':>9}{'img/s':>8}{'GFLOP/img':>10}{'GFLOP/s':>9}{'% peak':>8}{'conv %':>8}{'convs alone':>12}")
    for r in rows:
        print(f"{r['model']:24}{r['dtype']:>6}{str(r['channels_last']):>8}{r['params']:>11,}{r['ms_per_step']:9.0f}"
              f"{r['images_per_s']:8.1f}{r['gflop_per_image']:10.3f}{r['gflop_per_s']:9.1f}{r['pct_of_matmul_peak']:8.1f}"
              f"{100 * r['conv_share']:8.1f}{r['images_per_s_convs_alone']:12.1f}")
    print(f"\nsampling {a.bs} images, {a.sample_steps} DDIM steps (fastest of {a.repeats} rounds)")
    print(f"{'job':24}{'ch_last':>8}{'s':>8}{'img/s':>8}{'conv %':>8}{'convs alone':>12}{'x bare':>8}{'1 + loop/bare':>15}")
    for r in samp:
        print(f"{r['job']:24}{str(r['channels_last']):>8}{r['seconds']:8.2f}{r['images_per_s']:8.1f}"
              + (f"{100 * r['conv_share']:8.1f}{r['images_per_s_convs_alone']:12.1f}" if 'conv_share' in r else ' ' * 20)
              + (f"{r['over_bare_calls']:8.3f}{r['loop_over_bare_calls']:15.4f}" if r['over_bare_calls'] else ''))
    print(f"the sampler's loop alone (a model that predicts zeros): {loop * 1e3:.1f} ms")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'torch': torch.__version__, 'cpu_flags': flags, 'threads': torch.get_num_threads(),
                                       'batch_size': a.bs, 'matmul_peak_gflops': peaks, 'train': rows, 'sampler': samp,
                                       'sampler_loop_alone_s': loop}, indent=1))


if __name__ == '__main__': main()
