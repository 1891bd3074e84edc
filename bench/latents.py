"""The latent cache on this machine, side by side in one run: VAE encoding throughput of a cache build, random
mini-batch reads from the memmap against one .npy file per item, JPEG decoding with TorchCodec against PIL, the data
loader's share of a training step on the cache, and memory (anonymous vs file-backed RSS) while training from it.
Prints a table; writes bench/results/latents.json.

    python bench/latents.py [--n 20000] [--bs 64]
"""
import argparse, json, os, platform, tempfile, time
from pathlib import Path
import numpy as np, torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchcodec.decoders import decode_jpeg
from miniai.data import photo_crops
from miniai.diffusion import noisify_collate
from miniai.files import ImageFolder
from miniai.autoencoder import load_vae
from miniai.latents import cache_latents
from miniai.simple_diffusion import SimpleDiffusion
from stand_ins import UNTRAINED_VAE, untrained_vae


def rss():
    "Resident memory in MiB: anonymous (the process's own) and file-backed (mapped files, e.g. the memmap)."
    d = dict(l.split(':') for l in Path('/proc/self/status').read_text().splitlines() if l.startswith(('RssAnon', 'RssFile')))
    return {k: int(v.split()[0]) / 1024 for k, v in d.items()}


class MemmapLatents(Dataset):
    def __init__(self, lat): self.lat = lat
    def __len__(self): return len(self.lat)
    def __getitem__(self, i): return torch.from_numpy(np.array(self.lat[i]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=20_000, help='latents in the read and training benchmarks (4x32x32 float32)')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'latents.json'))
    a = p.parse_args()
    tmp, res = Path(tempfile.mkdtemp()), {}
    torch.manual_seed(0)

    # JPEG decoding and encoding throughput on 256x256 photo crops
    crops, _ = photo_crops(256, size=256, seed=0)
    (tmp / 'jpg').mkdir()
    files = []
    for i, im in enumerate(crops):
        files.append(tmp / 'jpg' / f'{i:04d}.jpg'); Image.fromarray(im.permute(1, 2, 0).numpy()).save(files[-1], quality=90)
    t = time.perf_counter(); [decode_jpeg(f, mode='RGB') for f in files]
    res['decode_torchcodec_img_s'] = len(files) / (time.perf_counter() - t)
    t = time.perf_counter(); [torch.from_numpy(np.asarray(Image.open(f).convert('RGB'))) for f in files]
    res['decode_pil_img_s'] = len(files) / (time.perf_counter() - t)
    try: vae = load_vae()
    except OSError: vae = None  # offline: an untrained VAE of SD's shape costs the same to run
    res['vae'] = str(vae.config.get('_name_or_path')) if vae is not None else UNTRAINED_VAE
    vae = vae or untrained_vae()
    t = time.perf_counter()
    cache_latents(DataLoader(ImageFolder(tmp / 'jpg', size=256), 32, num_workers=2), vae, tmp / 'enc.npy')
    res['encode_256px_img_s'] = len(files) / (time.perf_counter() - t)

    # random mini-batches: one memmap against one .npy per item
    lat = np.lib.format.open_memmap(tmp / 'lat.npy', mode='w+', dtype=np.float32, shape=(a.n, 4, 32, 32))
    lat[:] = np.random.default_rng(0).standard_normal(lat.shape, dtype=np.float32); lat.flush()
    (tmp / 'items').mkdir()
    for i in range(a.n): np.save(tmp / 'items' / f'{i}.npy', lat[i])
    lat = np.load(tmp / 'lat.npy', mmap_mode='r')
    idx = [np.sort(np.random.default_rng(s).choice(a.n, a.bs, replace=False)) for s in range(200)]
    t = time.perf_counter(); [np.asarray(lat[i]) for i in idx]; mm = (time.perf_counter() - t) / len(idx)
    t = time.perf_counter(); [np.stack([np.load(tmp / 'items' / f'{j}.npy') for j in i]) for i in idx]
    per = (time.perf_counter() - t) / len(idx)
    res.update(memmap_batch_ms=mm * 1e3, npy_files_batch_ms=per * 1e3, memmap_speedup=per / mm)

    # training from the cache: the loader's share of the step, and memory
    model = SimpleDiffusion(4, 4, (64, 128, 256), n_mids=8, attn_chans=32, img_size=32)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    dl = DataLoader(MemmapLatents(lat), a.bs, shuffle=True, num_workers=1, collate_fn=noisify_collate)
    wait = step = 0.; before = rss(); n_steps = 20
    it, t = iter(dl), time.perf_counter()
    for k in range(n_steps):
        x_t, ts, eps = next(it); t1 = time.perf_counter(); wait += t1 - t
        loss = F.mse_loss(model(x_t, ts), eps); loss.backward(); opt.step(); opt.zero_grad()
        t = time.perf_counter(); step += t - t1
    after = rss()
    res.update(train_steps=n_steps, data_wait_ms=wait / n_steps * 1e3, step_ms=step / n_steps * 1e3,
               data_share=wait / (wait + step), rss_before_mib=before, rss_after_mib=after,
               cache_mib=lat.size * lat.itemsize / 2 ** 20)

    print(f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"JPEG decode 256x256: TorchCodec {res['decode_torchcodec_img_s']:.0f} img/s, PIL {res['decode_pil_img_s']:.0f} img/s "
          f"(x{res['decode_torchcodec_img_s'] / res['decode_pil_img_s']:.2f})")
    print(f"cache build, 256x256 -> 4x32x32, {res['vae']}: {res['encode_256px_img_s']:.1f} img/s")
    print(f"random batch of {a.bs} from {a.n:,} latents: memmap {mm * 1e3:.2f} ms, one .npy per item {per * 1e3:.2f} ms "
          f"(memmap x{per / mm:.1f} faster)")
    print(f"training from the cache (SimpleDiffusion 4x32x32, batch {a.bs}): step {res['step_ms']:.0f} ms, waiting for data "
          f"{res['data_wait_ms']:.1f} ms ({100 * res['data_share']:.1f}% of the step)")
    print(f"memory: cache {res['cache_mib']:.0f} MiB on disk; RSS anon {before['RssAnon']:.0f} -> {after['RssAnon']:.0f} MiB, "
          f"file-backed {before['RssFile']:.0f} -> {after['RssFile']:.0f} MiB")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), **res}, indent=1))


if __name__ == '__main__': main()
