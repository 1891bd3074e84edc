"""Training-step throughput of a conv net on this machine: fp32 vs bf16 autocast, NCHW vs channels-last,
against the machine's measured fp32 and bf16 matmul peaks. Prints a table; writes bench/results/train_step.json.

    python bench/train_step.py [--bs 128] [--steps 10] [--device cpu]
"""
import argparse, json, platform, time
from pathlib import Path
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from miniai.networks import cnn_classifier
from miniai.networks import init_weights


def matmul_peak(dtype, device, n=1024, reps=5):
    "Best-of GFLOP/s of an n x n x n matmul."
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter(); a @ b
        if device.type == 'cuda': torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def step_fn(model, opt, x, y, dtype, device):
    def step():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y)
        loss.backward(); opt.step(); opt.zero_grad()
    return step


def bench(dtype, channels_last, bs, steps, device):
    torch.manual_seed(0)
    model = cnn_classifier(nfs=(32, 64, 128, 256)).to(device); model.apply(init_weights)
    x, y = torch.randn(bs, 1, 28, 28, device=device), torch.randint(0, 10, (bs,), device=device)
    if channels_last: model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    step = step_fn(model, opt, x, y, dtype, device)
    with FlopCounterMode(display=False) as fc: step()
    step()
    if device.type == 'cuda': torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps): step()
    if device.type == 'cuda': torch.cuda.synchronize()
    secs = (time.perf_counter() - t) / steps
    return {'dtype': 'bf16' if dtype else 'fp32', 'channels_last': channels_last, 'ms_per_step': secs * 1e3,
            'images_per_s': bs / secs, 'gflop_per_step': fc.get_total_flops() / 1e9,
            'gflop_per_s': fc.get_total_flops() / secs / 1e9}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--bs', type=int, default=128)
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--device', default='cpu')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'train_step.json'))
    a = p.parse_args()
    device = torch.device(a.device)
    peaks = {'fp32': matmul_peak(torch.float32, device), 'bf16': matmul_peak(torch.bfloat16, device, n=512 if device.type == 'cpu' else 4096)}
    rows = [bench(dt, cl, a.bs, a.steps if dt is None else max(2, a.steps // 5), device)
            for dt in (None, torch.bfloat16) for cl in (False, True)]
    for r in rows: r['pct_of_matmul_peak'] = 100 * r['gflop_per_s'] / peaks[r['dtype']]
    print(f"device {device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"batch {a.bs}; matmul peak fp32 {peaks['fp32']:.1f} GFLOP/s, bf16 {peaks['bf16']:.1f} GFLOP/s")
    print(f"{'dtype':6} {'layout':13} {'ms/step':>9} {'img/s':>9} {'GFLOP/step':>11} {'GFLOP/s':>9} {'% peak':>7} {'vs fp32':>8}")
    base = rows[0]['ms_per_step']
    for r in rows:
        print(f"{r['dtype']:6} {'channels-last' if r['channels_last'] else 'NCHW':13} {r['ms_per_step']:9.1f} {r['images_per_s']:9.0f} "
              f"{r['gflop_per_step']:11.3f} {r['gflop_per_s']:9.1f} {r['pct_of_matmul_peak']:7.1f} {base / r['ms_per_step']:7.2f}x")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'device': str(device), 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                                       'cpu_capabilities': {k: v for k, v in torch.cpu.get_capabilities().items() if 'bf16' in k or 'amx' in k},
                                       'batch_size': a.bs, 'matmul_peak_gflops': peaks, 'rows': rows}, indent=1))


if __name__ == '__main__': main()
