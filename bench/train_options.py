"""`miniai train`'s speed options against its defaults, side by side in one run: the Fashion-MNIST sample's U-Net trained
by the command itself with the same seed and epochs, plain, with `--channels-last`, and (with `--compile`) with both;
training seconds as the command reports them, and FID and KID of `miniai fid --run` (same sampling seed, sampled in the
run's memory format). Writes bench/results/train_options.json; a rerun skips the options already measured there.

    python bench/train_options.py [--epochs 5] [--n 500] [--compile]
"""
import argparse, json, os, platform, re, subprocess, sys, tempfile
from pathlib import Path
import torch


def miniai(*args, inductor_cache):
    "Run the `miniai` command with its own, empty, `torch.compile` cache folder (so compiling is timed cold); its output."
    r = subprocess.run([sys.executable, '-c', 'from miniai.cli import main; main()', *args], capture_output=True, text=True,
                       env={**os.environ, 'TORCHINDUCTOR_CACHE_DIR': str(inductor_cache)})
    if r.returncode: sys.exit(f"miniai {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return r.stdout


COMPILE_STEPS = """
import sys, time, torch, torch.nn.functional as F
from miniai.diffusion import noisify
from miniai.runs import RunConfig, model_args
model = RunConfig(model_args=model_args('unet', 1, 32)).build_model().to(memory_format=torch.channels_last)
model.compile()
opt = torch.optim.AdamW(model.parameters(), 1e-3)
(x_t, t), eps = noisify(torch.rand(64, 1, 32, 32) - 0.5)
for _ in range(2):
    t0 = time.perf_counter()
    F.mse_loss(model(x_t, t), eps).backward(); opt.step(); opt.zero_grad()
    print(time.perf_counter() - t0)
"""


def compile_seconds(inductor_cache):
    """How much longer the first training step (batch 64) of the compiled channels_last U-Net takes than the second, in a
    fresh process with an empty compile cache: the compile time."""
    r = subprocess.run([sys.executable, '-c', COMPILE_STEPS], capture_output=True, text=True, check=True,
                       env={**os.environ, 'TORCHINDUCTOR_CACHE_DIR': str(inductor_cache)})
    first, second = map(float, r.stdout.split())
    return first - second


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--n', type=int, default=500, help='samples for FID')
    p.add_argument('--compile', action='store_true', help='add the run with --channels-last --compile')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'train_options.json'))
    a = p.parse_args()
    out = Path(a.out)
    res = json.loads(out.read_text()) if out.exists() else {'torch': torch.__version__, 'cpu': platform.machine(),
                                                           'cpu_flags': [f for f, v in torch.cpu.get_capabilities().items() if v and f in
                                                                         ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16')],
                                                           'epochs': a.epochs, 'runs': []}
    if res['epochs'] != a.epochs: sys.exit(f"{out} holds runs of {res['epochs']} epochs: pass --epochs {res['epochs']} or another --out.")
    options = [(), ('--channels-last',)] + ([('--channels-last', '--compile')] if a.compile else [])
    with tempfile.TemporaryDirectory() as tmp:
        for opts in options:
            if any(r['options'] == list(opts) for r in res['runs']): continue
            run = f'{tmp}/{len(res["runs"])}'
            log = miniai('train', '--epochs', str(a.epochs), '--out', run, *opts, inductor_cache=f'{run}.inductor')
            secs = float(re.search(r'trained \d+ epochs in (\d+) s', log)[1])
            valid = [h['loss'] for h in json.loads(Path(run, 'history.json').read_text()) if h['train'] == 'eval']
            score = miniai('fid', '--run', run, '--n', str(a.n), *(o for o in opts if o == '--channels-last'),
                           inductor_cache=f'{run}.inductor')
            fid, kid = map(float, re.search(r'FID ([\d.]+), KID ([\d.]+)', score).groups())
            res['runs'].append(dict(options=list(opts), train_s=secs, last_valid_loss=valid[-1], fid=fid, kid=kid))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=1))
        if a.compile and 'compile_s' not in res:
            res['compile_s'] = compile_seconds(f'{tmp}/compile.inductor')
            out.write_text(json.dumps(res, indent=1))
    print(f"CPU flags {', '.join(res['cpu_flags'])}, torch {res['torch']}; `miniai train --epochs {a.epochs}` on the Fashion-MNIST "
          f"sample, then `miniai fid --run` ({a.n} samples)")
    base = res['runs'][0]['train_s']
    print(f"{'options':32}{'train s':>9}{'speed-up':>10}{'valid loss':>12}{'FID':>8}{'KID':>9}")
    for r in res['runs']:
        print(f"{' '.join(r['options']) or '(defaults)':32}{r['train_s']:9.0f}{base / r['train_s']:10.2f}{r['last_valid_loss']:12.4f}"
              f"{r['fid']:8.2f}{r['kid']:9.4f}")
    print("train s: the command's own figure, validation epochs included" + (
          f"; --compile: the first training step took {res['compile_s']:.0f} s more than the next" if 'compile_s' in res else ''))


if __name__ == '__main__': main()
