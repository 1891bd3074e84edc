"""GPU throughput, side by side in one run on one CUDA device: training images/s of miniai's EmbUNetModel and diffusers'
UNet2DModel of matched size (bench/diffusion.py's pair) in bf16 autocast, without and with channels_last (and with
--compile, channels_last compiled by torch.compile, its compile time in the first step); sampling images/s of DDIM
(50 steps, miniai's `sample_ddim` against diffusers' DDIMPipeline with the matched UNet2DModel) and of DPM++ 2M (20 steps);
peak memory of each. Prints a table; writes bench/results/gpu.json.

    python bench/gpu.py [--bs 256] [--steps 20] [--compile]
    python bench/gpu.py --device cpu --bs 8 --steps 1 --sample-n 4 --sample-steps 2   # checks the script without a GPU
"""
import argparse, json, platform, time
from pathlib import Path
import torch
import torch.nn.functional as F
from diffusers import DDIMPipeline, DDIMScheduler
from miniai.unet import EmbUNetModel, DiffusersUNet
from miniai.diffusion import noisify, sample_ddim
from miniai.karras import EpsDenoiser, sample_karras
from diffusion import UNET  # bench/diffusion.py


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


def measure(f, n, dev):
    "Seconds of the first call (compilation, warm-up) and the mean of the next `n`, and the peak memory (MiB) of those."
    t0 = time.perf_counter(); f(); sync(dev)
    first = time.perf_counter() - t0
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(n): f()
    sync(dev)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == 'cuda' else None
    return first, (time.perf_counter() - t0) / n, peak


def train_row(name, make, bs, steps, dev, channels_last, compiled):
    torch.manual_seed(0)
    model = make().to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    fwd = torch.compile(model) if compiled else model
    (x, t), eps = noisify(torch.rand(bs, 1, 32, 32, device=dev) - 0.5)
    x = x.contiguous(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), 1e-4, fused=dev.type == 'cuda')
    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = F.mse_loss(fwd(x, t).float(), eps)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    first, secs, peak = measure(step, steps, dev)
    return {'model': name, 'channels_last': channels_last, 'compile': compiled, 'params': sum(p.numel() for p in model.parameters()),
            'images_per_s': bs / secs, 'first_step_s': first, 'peak_mib': peak}


@torch.no_grad()
def sample_rows(n, steps, dev):
    torch.manual_seed(0)
    ours, theirs = EmbUNetModel(**UNET).to(dev).eval(), DiffusersUNet().to(dev).eval()
    pipe = DDIMPipeline(unet=theirs.unet, scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    shape = (n, 1, 32, 32)
    jobs = {f'miniai sample, DDIM {steps} steps': lambda: sample_ddim(ours, shape, steps=steps, eta=1.),
            f'diffusers DDIMPipeline, {steps} steps': lambda: pipe(batch_size=n, num_inference_steps=steps, eta=1., output_type='np'),
            f'miniai DPM++ 2M, {max(1, steps * 2 // 5)} steps': lambda: sample_karras(EpsDenoiser(ours), shape, 'dpmpp_2m', max(1, steps * 2 // 5))}
    rows = []
    for name, f in jobs.items():
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            _, secs, peak = measure(f, 2, dev)
        rows.append({'sampler': name, 'images': n, 'images_per_s': n / secs, 'peak_mib': peak})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda')
    p.add_argument('--bs', type=int, default=256)
    p.add_argument('--steps', type=int, default=20, help='timed training steps per row')
    p.add_argument('--compile', action='store_true', help='add rows with torch.compile')
    p.add_argument('--sample-n', type=int, default=64)
    p.add_argument('--sample-steps', type=int, default=50)
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'gpu.json'))
    a = p.parse_args()
    dev = torch.device(a.device)
    if dev.type == 'cuda': torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else platform.processor() or platform.machine()
    variants = [(False, False), (True, False)] + ([(True, True)] if a.compile else [])  # (channels_last, compile)
    train = [train_row(m, make, a.bs, a.steps, dev, cl, comp) for cl, comp in variants
             for m, make in (('miniai EmbUNetModel', lambda: EmbUNetModel(**UNET)), ('diffusers UNet2DModel', DiffusersUNet))]
    samp = sample_rows(a.sample_n, a.sample_steps, dev)
    mib = lambda v: '-' if v is None else f'{v:.0f}'
    print(f"{name}, torch {torch.__version__}; bf16 autocast; training batch {a.bs}, 1x32x32")
    print(f"{'model':24}{'channels_last':>14}{'compile':>8}{'img/s':>9}{'first step s':>13}{'peak MiB':>9}")
    for r in train: print(f"{r['model']:24}{str(r['channels_last']):>14}{str(r['compile']):>8}{r['images_per_s']:9.0f}"
                          f"{r['first_step_s']:13.1f}{mib(r['peak_mib']):>9}")
    print(f"\n{'sampler':36}{'img/s':>9}{'peak MiB':>9}")
    for r in samp: print(f"{r['sampler']:36}{r['images_per_s']:9.1f}{mib(r['peak_mib']):>9}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'device': name, 'torch': torch.__version__, 'batch_size': a.bs, 'train': train,
                                       'sample': samp}, indent=1))


if __name__ == '__main__': main()
