"""How many optimiser steps `miniai train`'s default model needs before its samples look like anything: the default run
(the U-Net on the packaged Fashion-MNIST sample, batch 64) trained for several epoch counts, each run's samples scored by
FID (500 samples, DDIM 50 steps, the library's evaluator). `miniai train` warns below the step count this table supports.

    python bench/min_steps.py [--epochs 1 2 5 10] [--out bench/results/min_steps.json]
"""
import argparse, contextlib, io, json, platform, tempfile, time
from pathlib import Path
import torch
from miniai.accel import native_amp_dtype
from miniai.jobs import train, score

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--epochs', type=int, nargs='+', default=[1, 2, 5, 10])
    p.add_argument('--n', type=int, default=500)
    p.add_argument('--out', default='bench/results/min_steps.json')
    a = p.parse_args()
    rows = []
    for epochs in a.epochs:
        run = Path(tempfile.mkdtemp()) / 'run'
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()): history = train(run, epochs=epochs)
        secs = time.perf_counter() - t0
        with contextlib.redirect_stdout(io.StringIO()): res = score(run, n=a.n)
        steps = epochs * 56  # 3,615 images in batches of 64, the last partial one dropped
        rows.append(dict(epochs=epochs, steps=steps, train_s=secs, valid_loss=history[-1]['loss'], fid=res['fid'], kid=res['kid']))
        print(f"{epochs:3} epochs {steps:5} steps {secs:7.0f} s  valid loss {rows[-1]['valid_loss']:.4f}  FID {res['fid']:6.2f}", flush=True)
    Path(a.out).write_text(json.dumps(dict(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                                           cpu_capability=torch.backends.cpu.get_cpu_capability(),
                                           autocast=str(native_amp_dtype('cpu')), torch=torch.__version__, n_samples=a.n,
                                           rows=rows), indent=1))
