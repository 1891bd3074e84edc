"""Audio diffusion costs on this machine, in one run: audio to mel spectrogram image and Griffin-Lim inversion, seconds per
5 s clip; training the notebook's simple-diffusion models, on 1x128x128 spectrograms (`MelConfig()`) and on the offline
run's class-conditional 1x64x64 ones (`MEL_64`), images/s in fp32 and in bf16 autocast.
Prints a table; writes bench/results/audio.json.

    python bench/audio.py [--clips 8] [--bs 32] [--steps 3]
"""
import argparse, json, platform, time
from pathlib import Path
import torch
import torch.nn.functional as F
from miniai.accel import native_amp_dtype
from miniai.audio import MelConfig, audio_to_image, image_to_audio, synthetic_calls
from miniai.diffusion import noisify
from miniai.simple_diffusion import SimpleDiffusion


MODELS = {128: lambda: SimpleDiffusion(1, 1, nfs=(8, 16, 32, 64, 128), n_mids=4, attn_chans=32, img_size=128),
          64: lambda: SimpleDiffusion(1, 1, nfs=(8, 16, 32, 64), n_mids=6, attn_chans=16, img_size=64, n_classes=4)}


def train_img_s(model, size, bs, steps, dtype):
    "Training images/s over `steps` steps after one warm-up, the forward pass and loss under `dtype` autocast."
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    (x_t, t), eps = noisify(torch.rand(bs, 1, size, size) - 0.5)
    c = (torch.arange(bs) % 5,) if model.null_class else ()  # classes, 'no class' among them
    for k in range(steps + 1):
        if k == 1: t0 = time.perf_counter()
        with torch.autocast('cpu', dtype=dtype, enabled=dtype != torch.float32):
            loss = F.mse_loss(model(x_t, t, *c).float(), eps)
        loss.backward(); opt.step(); opt.zero_grad()
    return bs * steps / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--clips', type=int, default=8)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--steps', type=int, default=3, help='timed training steps per precision, after one warm-up')
    p.add_argument('--out', default=str(Path(__file__).parent / 'results' / 'audio.json'))
    a = p.parse_args()
    cfg = MelConfig()
    clips, _ = synthetic_calls(a.clips, cfg, seed=0)
    image_to_audio(audio_to_image(clips[0], cfg), cfg)  # warm-up: librosa imports its parts on first use (seconds)
    t0 = time.perf_counter(); images = [audio_to_image(c, cfg) for c in clips]; to_image = (time.perf_counter() - t0) / a.clips
    t0 = time.perf_counter(); [image_to_audio(im, cfg) for im in images]; to_audio = (time.perf_counter() - t0) / a.clips
    res = dict(cfg=cfg.__dict__, to_image_s=to_image, griffin_lim_s=to_audio, bs=a.bs, steps=a.steps,
               native_16bit=str(native_amp_dtype('cpu')))
    for size, make in MODELS.items():
        for name, dtype in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
            torch.manual_seed(0)
            model = make()
            res[f'train_{size}_{name}_img_s'] = train_img_s(model, size, a.bs, a.steps, dtype)
        res[f'params_{size}'] = sum(p.numel() for p in model.parameters())
    print(f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"native 16-bit maths on this CPU: {res['native_16bit']}")
    print('| step | result |\n|---|---|')
    print(f"| audio -> mel image ({cfg.seconds:.1f} s clip, {cfg.n_mels}x{cfg.frames}) | {1e3 * to_image:.1f} ms per clip |")
    print(f"| mel image -> audio (mel inversion + Griffin-Lim, {cfg.n_iter} iterations) | {to_audio:.2f} s per clip |")
    for size in MODELS:
        fp32, bf16 = res[f'train_{size}_fp32_img_s'], res[f'train_{size}_bf16_img_s']
        print(f"| training SimpleDiffusion ({res[f'params_{size}']:,} parameters), 1x{size}x{size}, batch {a.bs}, fp32 | "
              f"{fp32:.1f} images/s |")
        print(f"| same, bf16 autocast | {bf16:.1f} images/s (x{bf16 / fp32:.2f}) |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), **res}, indent=1))


if __name__ == '__main__': main()
