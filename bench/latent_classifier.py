"""Training the latent classifier from the per-file latent cache against decoding and encoding the same images at every
step, side by side in one run: images/s of each, and the share of the step spent waiting for data (and encoding).
Prints a table; writes bench/results/latent_classifier.json.

    python bench/latent_classifier.py [--n 512] [--bs 64] [--steps 6] [--workers 1]
"""
import argparse, json, platform, tempfile, time
from pathlib import Path
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from torch.utils.data import DataLoader
from PIL import Image
from miniai.data import PHOTOS, photo_crops
from miniai.files import ImageFolder, list_images
from miniai.autoencoder import load_vae
from miniai.latents import vae_name
from miniai.networks import LatentResNet
from miniai.latent_files import CLS_LOC, LatentFiles, encode_folder
from stand_ins import UNTRAINED_VAE, untrained_vae


def photo_tree(folder, n, size=256):
    "`n` JPEG crops of scikit-image's photos at `size`, one class folder per photo: ImageNet-sized images to decode."
    crops, labels = photo_crops(n, size)
    for i, (im, k) in enumerate(zip(crops, labels.tolist())):
        (folder / PHOTOS[k]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / PHOTOS[k] / f'{i}.JPEG', 'JPEG', quality=90)


def timed_steps(dl, model, opt, steps, encode=None):
    "Train `steps` batches after one warm-up; seconds waiting for the loader, encoding, and in the model's step."
    wait = enc = step = 0.
    it = iter(dl)
    for k in range(steps + 1):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        if encode: x = encode(x)
        t2 = time.perf_counter()
        F.cross_entropy(model(x), y).backward(); opt.step(); opt.zero_grad()
        t3 = time.perf_counter()
        if k: wait, enc, step = wait + t1 - t0, enc + t2 - t1, step + t3 - t2
    return wait, enc, step


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=512, help='256x256 photo crops to encode (at least bs * (steps + 1))')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--steps', type=int, default=6, help='timed steps of each kind, after one warm-up step')
    p.add_argument('--workers', type=int, default=1, help='DataLoader worker processes')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'latent_classifier.json'))
    a = p.parse_args()
    if a.n < a.bs * (a.steps + 1): p.error(f'--n {a.n}: need at least bs * (steps + 1) = {a.bs * (a.steps + 1)} images')
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    photo_tree(tmp / CLS_LOC / 'train', a.n)
    try: vae = load_vae()
    except OSError: vae = None  # offline: an untrained VAE of SD's shape costs the same to run
    vae_desc = vae_name(vae) if vae is not None else UNTRAINED_VAE
    vae = vae or untrained_vae()
    src, dst = tmp / CLS_LOC / 'train', tmp / 'latents' / 'train'
    t = time.perf_counter()
    encode_folder(src, dst, vae, bs=32, workers=2, progress=False)
    encode_s = time.perf_counter() - t
    files = list_images(dst, exts=('.npy',))
    labels = torch.randint(1000, (len(files),))
    model = LatentResNet()  # the full-size model, 1,000 classes
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    loader = dict(batch_size=a.bs, shuffle=True, drop_last=True, num_workers=a.workers, persistent_workers=a.workers > 0)

    cached = DataLoader(LatentFiles(files, labels, T.RandomCrop(32, padding=4)), **loader)
    c_wait, _, c_step = timed_steps(cached, model, opt, a.steps)

    class Pixels(ImageFolder):  # what training without the cache loads: the decoded, resized image and a label
        def __getitem__(self, i): return super().__getitem__(i), labels[i]
    @torch.no_grad()
    def encode(x): return vae.encode(x * 2 - 1).latent_dist.mean
    pixels = DataLoader(Pixels(src, size=256), **loader)
    p_wait, p_enc, p_step = timed_steps(pixels, model, opt, a.steps, encode)

    n = a.steps * a.bs
    res = dict(vae=vae_desc, images=len(files), bs=a.bs, steps=a.steps, workers=a.workers,
               params=sum(p.numel() for p in model.parameters()), encode_cache_img_s=len(files) / encode_s,
               cached=dict(img_s=n / (c_wait + c_step), data_wait_share=c_wait / (c_wait + c_step), step_ms=1e3 * c_step / a.steps),
               pixels=dict(img_s=n / (p_wait + p_enc + p_step), data_wait_share=p_wait / (p_wait + p_enc + p_step),
                           encode_share=p_enc / (p_wait + p_enc + p_step), step_ms=1e3 * p_step / a.steps))
    res['speedup'] = res['cached']['img_s'] / res['pixels']['img_s']
    print(f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"VAE {res['vae']}; LatentResNet {res['params']:,} parameters; batch {a.bs}, {a.steps} timed steps, "
          f"{a.workers} loader worker(s)")
    print(f"cache build (256x256 JPEG -> 4x32x32 float16 .npy): {res['encode_cache_img_s']:.1f} img/s")
    print('| training from | images/s | waiting for data | VAE encoding | model step (ms) |')
    print('|---|---|---|---|---|')
    c, q = res['cached'], res['pixels']
    print(f"| latent cache | {c['img_s']:.1f} | {100 * c['data_wait_share']:.1f}% | - | {c['step_ms']:.0f} |")
    print(f"| JPEG, decoded and encoded each step | {q['img_s']:.1f} | {100 * q['data_wait_share']:.1f}% | "
          f"{100 * q['encode_share']:.1f}% | {q['step_ms']:.0f} |")
    print(f"the cache trains x{res['speedup']:.1f} faster")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), **res}, indent=1))


if __name__ == '__main__': main()
