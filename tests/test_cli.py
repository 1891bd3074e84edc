import json, subprocess, sys


def miniai(*args, cwd):
    return subprocess.run([sys.executable, '-c', 'from miniai.cli import main; main()', *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin',
                                                                           'MPLBACKEND': 'Agg', 'HOME': str(cwd)})


def test_classify_end_to_end(tmp_path):
    r = miniai('classify', '--epochs', '1', '--out', 'out', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    history = json.loads((tmp_path / 'out/history.json').read_text())
    assert [h['train'] for h in history] == ['train', 'eval'] and history[-1]['accuracy'] > 0.5
    assert (tmp_path / 'out/history.png').stat().st_size > 1000 and (tmp_path / 'out/classifier.pt').exists()
    import torch
    ck = torch.load(tmp_path / 'out/classifier.pt', weights_only=True)
    assert {'model', 'mean', 'std'} <= set(ck)


def test_missing_data_folder_is_one_clear_line(tmp_path):
    r = miniai('classify', '--data', str(tmp_path / 'nowhere'), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith('miniai: error:') and 'nowhere' in r.stderr


def test_bad_option_values(tmp_path):
    r = miniai('classify', '--epochs', '0', cwd=tmp_path)
    assert r.returncode == 2 and 'at least 1' in r.stderr


def fashion_folder(path, n=48):
    "A folder of `n` Fashion-MNIST images as 32x32 PNGs."
    from torchvision.utils import save_image
    from miniai.data import load_fashion_mnist
    from miniai.data import fashion_diffusion_tensors
    path.mkdir()
    for i, im in enumerate(fashion_diffusion_tensors(load_fashion_mnist(verbose=False))[0][:n]):
        save_image(im + 0.5, path / f'{i:03d}.png')
    return path


def test_train_sample_fid_end_to_end(tmp_path):
    fashion_folder(tmp_path / 'imgs')
    train = ('train', '--data', 'imgs', '--channels', '1', '--bs', '16', '--epochs', '2', '--out', 'run')
    r = miniai(*train, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {'config.json', 'checkpoint.pt', 'history.json', 'loss.png'} <= {f.name for f in (tmp_path / 'run').iterdir()}
    assert [h['epoch'] for h in json.loads((tmp_path / 'run/history.json').read_text())] == [0, 0, 1, 1]
    r = miniai(*train, cwd=tmp_path)
    assert r.returncode == 2 and '--resume' in r.stderr.splitlines()[-1]
    r = miniai(*train, '--resume', cwd=tmp_path)  # a finished run resumes to nothing left to do
    assert r.returncode == 0 and 'resumed' in r.stdout, r.stderr[-2000:]
    r = miniai('sample', 'run', '--n', '6', '--steps', '3', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list((tmp_path / 'run/samples').glob('0*.png'))) == 6 and (tmp_path / 'run/samples/grid.png').exists()
    r = miniai('fid', '--run', 'run', '--n', '8', '--steps', '3', cwd=tmp_path)
    assert r.returncode == 0 and 'FID' in r.stdout, r.stderr[-2000:]
    r = miniai('fid', '--folder', 'imgs', cwd=tmp_path)
    assert r.returncode == 0 and '48 images: FID' in r.stdout, r.stderr[-2000:]


def test_killed_training_resumes_to_the_same_weights(tmp_path):
    import time, torch
    fashion_folder(tmp_path / 'imgs')
    args = ('train', '--data', 'imgs', '--channels', '1', '--bs', '8', '--epochs', '4', '--model', 'simple')
    r = miniai(*args, '--out', 'whole', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    p = subprocess.Popen([sys.executable, '-c', 'from miniai.cli import main; main()', *args, '--out', 'cut'], cwd=tmp_path,
                         env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin', 'MPLBACKEND': 'Agg', 'HOME': str(tmp_path)},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (tmp_path / 'cut/checkpoint.pt').exists() and p.poll() is None: time.sleep(0.05)
    p.kill(); p.wait()
    r = miniai(*args, '--out', 'cut', '--resume', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = (torch.load(tmp_path / d / 'checkpoint.pt', weights_only=True) for d in ('whole', 'cut'))
    assert a['epoch'] == b['epoch'] == 3
    for k in a['model']: torch.testing.assert_close(a['model'][k], b['model'][k], rtol=0, atol=0)
    assert [h['epoch'] for h in json.loads((tmp_path / 'cut/history.json').read_text())] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_user_errors_are_one_line(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'bad').mkdir(); (tmp_path / 'bad/x.png').write_bytes(b'not a png')
    (tmp_path / 'run').mkdir(); (tmp_path / 'run/config.json').write_text('{}'); (tmp_path / 'run/checkpoint.pt').write_bytes(b'junk')
    cases = [(('train', '--data', 'nowhere'), 'no such folder'), (('train', '--data', 'empty'), 'no images'),
             (('train', '--data', 'bad', '--channels', '1'), 'x.png: cannot decode'),
             (('train', '--data', 'empty', '--cond'), '--cond needs class labels'),
             (('train', '--out', 'fresh', '--resume'), 'no checkpoint to resume'),
             (('sample', 'nowhere'), 'not a `miniai train` run folder'), (('sample', 'run'), 'cannot load this checkpoint'),
             (('fid',), 'either --run or --folder'), (('sample', 'run', '--n', '0'), 'at least 1')]
    for args, msg in cases:
        r = miniai(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr[-1000:])
        assert msg in r.stderr.strip().splitlines()[-1], (args, r.stderr[-1000:])


def test_latent_space_train_sample_fid(tmp_path, vae_dir):
    fashion_folder(tmp_path / 'imgs')
    r = miniai('train', '--data', 'imgs', '--space', 'latent', '--bs', '16', '--epochs', '1', '--out', 'run', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((tmp_path / 'run/config.json').read_text())
    assert cfg['space'] == 'latent' and cfg['channels'] == 1 and cfg['latent']['shape'] == [2, 8, 8]
    assert {'latents_train.npy', 'latents_valid.npy'} <= {f.name for f in (tmp_path / 'run').iterdir()}
    r = miniai('train', '--data', 'imgs', '--space', 'latent', '--bs', '16', '--epochs', '1', '--out', 'run', '--resume', cwd=tmp_path)
    assert r.returncode == 0 and 'resumed' in r.stdout, r.stderr[-2000:]  # the cached latents are reused
    r = miniai('sample', 'run', '--n', '4', '--steps', '3', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    from PIL import Image
    assert Image.open(tmp_path / 'run/samples/0000.png').size == (32, 32)
    r = miniai('fid', '--run', 'run', '--n', '8', '--steps', '3', cwd=tmp_path)
    assert r.returncode == 0 and 'FID' in r.stdout, r.stderr[-2000:]
    # another autoencoder from a local folder: SD-shaped, RGB, 4 latent channels
    r = miniai('train', '--data', 'imgs', '--space', 'latent', '--vae', str(vae_dir), '--bs', '16', '--epochs', '1',
               '--out', 'rgb', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / 'rgb/config.json').read_text())['latent']['shape'] == [4, 4, 4]
    r = miniai('sample', 'rgb', '--n', '2', '--steps', '2', cwd=tmp_path)
    assert r.returncode == 0 and Image.open(tmp_path / 'rgb/samples/0000.png').mode == 'RGB', r.stderr[-2000:]


def test_latent_space_mistakes_are_one_line(tmp_path):
    r = miniai('train', '--vae', 'somewhere', '--out', 'a', cwd=tmp_path)
    assert r.returncode == 2 and '--space latent' in r.stderr.splitlines()[-1]
    r = miniai('train', '--space', 'latent', '--vae', str(tmp_path / 'nowhere'), '--out', 'b', cwd=tmp_path)
    assert r.returncode == 2 and 'cannot load this autoencoder' in r.stderr.splitlines()[-1]
    r = miniai('train', '--space', 'latent', '--data', '.', '--size', '30', '--out', 'c', cwd=tmp_path)
    assert r.returncode == 2 and 'multiple of 4' in r.stderr.splitlines()[-1]
