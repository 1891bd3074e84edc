"The package as users install it: a wheel, in a fresh environment, used from a folder outside the repository."
import subprocess, sys
from pathlib import Path
import torch
from miniai.fid import load_fashion_evaluator

ROOT = Path(__file__).parents[1]
LOAD = """import sys, miniai
from pathlib import Path
assert Path(miniai.__file__).is_relative_to(sys.argv[1]), miniai.__file__  # the installed copy, not the checkout
from miniai.autoencoder import load_vae, FASHION_VAE
from miniai.fid import load_fashion_evaluator
vae, evaluator = load_vae(FASHION_VAE, device='cpu'), load_fashion_evaluator()
print(vae.config.latent_channels, sum(p.numel() for p in evaluator.parameters()))
"""


def test_the_wheel_installed_outside_the_repository_works(tmp_path):
    """Build the wheel, install it into a new virtual environment (which reuses this one's installed dependencies), and
    from another folder: `miniai --help`, the shipped autoencoder and evaluator, and one tiny epoch of training."""
    run = lambda *cmd, **kw: subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    r = run(sys.executable, '-m', 'pip', 'wheel', ROOT, '--no-deps', '--no-build-isolation', '-q', '-w', tmp_path / 'wheel')
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((tmp_path / 'wheel').glob('miniai-*.whl'))
    venv = tmp_path / 'venv'
    assert run(sys.executable, '-m', 'venv', '--system-site-packages', venv).returncode == 0
    r = run(venv / 'bin/python', '-m', 'pip', 'install', '--no-deps', '-q', wheel)
    assert r.returncode == 0, r.stderr[-2000:]
    work = tmp_path / 'elsewhere'
    work.mkdir()
    env = {'HF_HUB_OFFLINE': '1', 'PATH': f"{venv / 'bin'}:/usr/bin:/bin", 'MPLBACKEND': 'Agg', 'HOME': str(work),
           'OMP_NUM_THREADS': str(torch.get_num_threads())}
    r = run(venv / 'bin/miniai', '--help', cwd=work, env=env)
    assert r.returncode == 0 and 'train' in r.stdout, r.stderr[-2000:]
    r = run(venv / 'bin/python', '-c', LOAD, venv, cwd=work, env=env)
    n_params = sum(p.numel() for p in load_fashion_evaluator().parameters())
    assert r.returncode == 0 and r.stdout.split() == ['2', str(n_params)], r.stderr[-2000:]  # both load, as shipped
    from torchvision.utils import save_image
    (work / 'imgs').mkdir()
    for i in range(24): save_image(torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(i)), work / 'imgs' / f'{i}.png')
    r = run(venv / 'bin/miniai', 'train', '--data', 'imgs', '--channels', '1', '--bs', '8', '--epochs', '1', '--sample-every', '0',
            cwd=work, env=env)
    assert r.returncode == 0 and (work / 'runs/pixel-unet/model.safetensors').exists(), r.stderr[-2000:]
