"""Kill `miniai train`, `cache_latents` and `encode_folder` with SIGKILL at random points of their work, run each again to
the end, and compare with a run that was never stopped: the same final weights and loss history (train), the same bytes
(`cache_latents`), the same latents (`encode_folder`: one file per image, encoded in other batches after a resume, so
equal up to float16 rounding). Prints a table; writes bench/results/faults.json.

    python bench/faults.py [--kills 10] [--out bench/results/faults.json]
"""
import argparse, json, os, platform, random, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch
from PIL import Image

CACHE = """
import sys
from torch.utils.data import DataLoader
from diffusers import AutoencoderKL
from miniai.files import ImageFolder
from miniai.latents import cache_latents
cache_latents(DataLoader(ImageFolder(sys.argv[1], size=32), 4), AutoencoderKL.from_pretrained(sys.argv[2]).eval(), sys.argv[3])
"""
ENCODE = """
import sys
from diffusers import AutoencoderKL
from miniai.latent_files import encode_folder
encode_folder(sys.argv[1], sys.argv[3], AutoencoderKL.from_pretrained(sys.argv[2]).eval(), size=32, bs=4, workers=0, progress=False)
"""
ENV = {**os.environ, 'HF_HUB_OFFLINE': '1', 'MPLBACKEND': 'Agg'}


def images(folder, n):
    "`n` Fashion-MNIST test images as 32x32 PNGs, in three subfolders."
    from miniai.data import load_fashion_mnist, fashion_diffusion_tensors
    x = fashion_diffusion_tensors(load_fashion_mnist(verbose=False))[2][:n]
    for i, im in enumerate(x):
        (folder / f'sub{i % 3}').mkdir(parents=True, exist_ok=True)
        Image.fromarray(((im[0] + 0.5) * 255).round().byte().numpy()).save(folder / f'sub{i % 3}' / f'{i:03d}.png')
    return folder


def tiny_vae(folder):
    "A small untrained SD-shaped `AutoencoderKL` saved with `save_pretrained` (the jobs load it in their own process)."
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 4,
                  up_block_types=('UpDecoderBlock2D',) * 4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4).save_pretrained(folder)
    return folder


class Job:
    "A command, the file whose appearance says its work has begun, and how to finish a killed run and compare it."
    def __init__(self, name, cmd, started, finish, same):
        self.name, self.cmd, self.started, self.finish, self.same = name, cmd, started, finish, same

    def run(self, out, kill_after=float('inf')):
        """Run into `out`, and SIGKILL it `kill_after` seconds after its work began (its `started` file appeared). Returns
        whether it was killed, and how long its work ran."""
        out.mkdir(parents=True, exist_ok=True)
        p = subprocess.Popen(self.cmd(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not self.started(out).exists() and p.poll() is None: time.sleep(0.01)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < kill_after and p.poll() is None: time.sleep(0.01)
        killed = p.poll() is None
        if killed: os.kill(p.pid, signal.SIGKILL)
        err = p.communicate()[1]
        if not killed and p.returncode: raise RuntimeError(f"{self.name} failed:\n{err[-2000:]}")
        return killed, time.perf_counter() - t0


def cli(*args): return [sys.executable, '-c', 'from miniai.cli import main; main()', *args]


def train_job(data):
    args = ('train', '--data', str(data), '--channels', '1', '--bs', '8', '--epochs', '4', '--model', 'simple',
            '--sample-every', '0')
    def finish(out):  # killed before its first checkpoint, a run starts again; after, it resumes
        subprocess.run(cli(*args, '--out', str(out), *(['--resume'] if (out / 'checkpoint.pt').exists() else [])),
                       env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def same(a, b):
        wa, wb = (torch.load(d / 'checkpoint.pt', weights_only=True)['model'] for d in (a, b))
        ha, hb = (json.loads((d / 'history.json').read_text()) for d in (a, b))
        return all(torch.equal(wa[k], wb[k]) for k in wa) and ha == hb, 0.
    return Job('miniai train (4 epochs)', lambda out: cli(*args, '--out', str(out)), lambda out: out / 'config.json', finish, same)


def cache_job(data, vae):
    cmd = lambda out: [sys.executable, '-c', CACHE, str(data), str(vae), str(out / 'lat.npy')]
    def finish(out): subprocess.run(cmd(out), env=ENV, check=True)
    def same(a, b): return (a / 'lat.npy').read_bytes() == (b / 'lat.npy').read_bytes(), 0.
    return Job('cache_latents (memmap)', cmd, lambda out: out / 'lat.npy.json', finish, same)


def encode_job(data, vae):
    cmd = lambda out: [sys.executable, '-c', ENCODE, str(data), str(vae), str(out / 'lat')]
    def finish(out): subprocess.run(cmd(out), env=ENV, check=True)
    def same(a, b):
        fa, fb = (sorted(p.relative_to(d / 'lat') for p in (d / 'lat').rglob('*.npy')) for d in (a, b))
        if fa != fb or list((b / 'lat').rglob('*.tmp')): return False, float('inf')
        diff = max(float(np.abs(np.load(a / 'lat' / f).astype(np.float32) - np.load(b / 'lat' / f).astype(np.float32)).max())
                   for f in fa)
        return diff <= 4e-3, diff  # a float16 step or two: a resumed run encodes the remaining images in other batches
    return Job('encode_folder (file per image)', cmd, lambda out: out / 'lat' / 'encoding.json', finish, same)


def measure(kills=10, n=48, seed=0):
    "Per job: `kills` runs killed at random points of their work, finished, and compared with an unbroken run."
    tmp, rng, rows = Path(tempfile.mkdtemp()), random.Random(seed), []
    data, vae = images(tmp / 'data', n), tiny_vae(tmp / 'vae')
    for job in (train_job(data), cache_job(data, vae), encode_job(data, vae)):
        whole = tmp / 'whole'
        _, secs = job.run(whole)
        killed = same = 0
        worst = 0.
        for k in range(kills):
            out = tmp / f'cut{k}'
            killed += job.run(out, kill_after=rng.uniform(0, secs))[0]  # at a random point of the work
            job.finish(out)
            ok, diff = job.same(whole, out)
            same, worst = same + ok, max(worst, diff)
            shutil.rmtree(out)
        shutil.rmtree(whole)
        rows.append(dict(job=job.name, work_s=round(secs, 1), kills=kills, killed_mid_work=killed, same=same, max_abs_diff=worst))
    shutil.rmtree(tmp)
    return rows


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--kills', type=int, default=10, help='SIGKILLs per job')
    p.add_argument('--n', type=int, default=48, help='images')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'faults.json'))
    a = p.parse_args()
    rows = measure(a.kills, a.n, a.seed)
    print(f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'job':32}{'work s':>7}{'kills':>6}{'mid-work':>9}{'same result':>12}{'max diff':>10}")
    for r in rows:
        print(f"{r['job']:32}{r['work_s']:7.1f}{r['kills']:6}{r['killed_mid_work']:9}{r['same']:>9}/{r['kills']:<2}{r['max_abs_diff']:10.1e}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(rows=rows, images=a.n, seed=a.seed, machine=platform.machine(),
                                           torch=torch.__version__), indent=1))
