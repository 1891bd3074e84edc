import json, re, subprocess, sys
from functools import partial
from types import SimpleNamespace
import pytest, torch
from PIL import Image


def console(*args, cwd, background=False):
    """Run the `miniai` command in a new Python process, as the console script does, offline: its exit code, stdout and
    stderr; or, `background`, the running process (its output discarded). It gets this process's thread count, so that a
    run it starts and one finished here sum in the same order."""
    cmd = [sys.executable, '-c', 'from miniai.cli import main; main()', *args]
    env = {'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin', 'MPLBACKEND': 'Agg', 'HOME': str(cwd),
           'OMP_NUM_THREADS': str(torch.get_num_threads())}
    if background: return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def miniai(tmp_path, monkeypatch, capsys):
    """Run the `miniai` command in this process, in `tmp_path`, offline: its exit code, stdout and stderr, as `console` gives
    them, without a new process's start-up (Python, PyTorch and the library: seconds a call). `console` runs where a
    separate process is the point: the real entry point end to end, a run killed mid-work, a run holding its folder's lock."""
    from miniai.cli import main
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    def run(*args):
        capsys.readouterr()
        try: main(list(args)); code = 0
        except SystemExit as e: code = e.code
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


def fails_in_one_line(run, args, msg):
    "Check that the command exits with 2 and that the last line of its stderr (its only line, no traceback) says `msg`."
    r = run(*args)
    assert r.returncode == 2 and msg in r.stderr.strip().splitlines()[-1], (args, r.stderr[-1000:])


def test_classify_end_to_end(tmp_path, miniai):
    r = miniai('classify', '--epochs', '1', '--out', 'out')
    assert r.returncode == 0, r.stderr[-2000:]
    history = json.loads((tmp_path / 'out/history.json').read_text())
    assert [h['train'] for h in history] == ['train', 'eval'] and history[-1]['accuracy'] > 0.5
    assert (tmp_path / 'out/history.png').stat().st_size > 1000 and (tmp_path / 'out/classifier.pt').exists()
    ck = torch.load(tmp_path / 'out/classifier.pt', weights_only=True)
    assert {'model', 'mean', 'std'} <= set(ck)


def test_missing_data_folder_is_one_clear_line(tmp_path, miniai):
    r = miniai('classify', '--data', str(tmp_path / 'nowhere'))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith('miniai: error:') and 'nowhere' in r.stderr


def test_bad_option_values(tmp_path, miniai):
    cases = [(('classify', '--epochs', '0'), '--epochs: 0 must be at least 1'), (('classify', '--lr', '0'), '--lr: 0 must be above 0'),
             (('train', '--lr', '-1'), '--lr: -1 must be above 0'), (('train', '--lr', 'nan'), '--lr: nan must be above 0'),
             (('train', '--bs', '2.5'), "--bs: '2.5' is not an integer"), (('train', '--size', '0'), '--size: 0 must be at least 1'),
             (('sample', 'run', '--steps', '0'), '--steps: 0'), (('sample', 'run', '--eta', '-0.5'), '--eta: -0.5 must be at least 0'),
             (('sample', 'run', '--guidance', 'inf'), '--guidance: inf'), (('sample', 'run', '--sampler', 'ddpm'), "--sampler: invalid choice: 'ddpm'"), (('fid', '--n', '1'), '--n: 1 must be at least 2'),
             (('train', '--epochs', 'x'), "--epochs: 'x' is not an integer")]
    for args, msg in cases: fails_in_one_line(miniai, args, msg)
    for args, msg in cases[:3]: fails_in_one_line(partial(console, cwd=tmp_path), args, msg)  # and through the console script


def test_help_shows_the_defaults(capsys):
    from miniai.cli import main
    with pytest.raises(SystemExit): main(['train', '--help'])
    out = capsys.readouterr().out
    entries = {e.split()[0]: ' '.join(e.split()) for e in re.split(r'\n(?=  -)', out.split('options:')[1]) if e.strip()}
    for opt, default in [('--epochs', '5'), ('--bs', '64'), ('--lr', '0.005'), ('--seed', '42'), ('--model', 'unet'),
                         ('--precision', 'auto'), ('--space', 'pixel'), ('--checkpoint-every', '5.0'), ('--sample-every', '1')]:
        assert entries[opt].endswith(f'(default: {default})'), entries[opt]
    assert 'runs/SPACE-MODEL, numbered when taken' in entries['--out']
    assert '(default: None)' not in out and '(default: False)' not in out


def fashion_folder(path, n=48):
    "A folder of `n` Fashion-MNIST images as 32x32 PNGs."
    from torchvision.utils import save_image
    from miniai.data import load_fashion_mnist
    from miniai.data import fashion_diffusion_tensors
    path.mkdir()
    for i, im in enumerate(fashion_diffusion_tensors(load_fashion_mnist(verbose=False))[0][:n]):
        save_image(im + 0.5, path / f'{i:03d}.png')
    return path


def test_train_sample_fid_end_to_end(tmp_path, miniai):
    fashion_folder(tmp_path / 'imgs')
    train = ('train', '--data', 'imgs', '--channels', '1', '--bs', '16', '--epochs', '2', '--out', 'run')
    r = console(*train, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert {'config.json', 'checkpoint.pt', 'history.json', 'loss.png'} <= {f.name for f in (tmp_path / 'run').iterdir()}
    assert [h['epoch'] for h in json.loads((tmp_path / 'run/history.json').read_text())] == [0, 0, 1, 1]
    assert sorted(f.name for f in (tmp_path / 'run/progress').iterdir()) == ['epoch-1.png', 'epoch-2.png']  # progress grids
    assert '\r' not in r.stdout  # to a file, a line per epoch: no progress bars
    r = miniai(*train)
    assert r.returncode == 2 and '--resume' in r.stderr.splitlines()[-1]
    r = miniai(*train, '--resume')  # a finished run: said, nothing trained
    assert r.returncode == 0 and 'run finished its 2 epochs: nothing to resume' in r.stdout, r.stderr[-2000:]
    r = miniai(*train[:-3], '3', '--out', 'run', '--resume')  # longer: a new run, and the way is named
    assert r.returncode == 2 and 'training for 3 is a new run' in r.stderr.splitlines()[-1], r.stderr[-2000:]
    r = miniai('sample', 'run', '--n', '6', '--steps', '3')
    assert r.returncode == 0 and 'wrote run/samples/grid.png and 6 images' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(list((tmp_path / 'run/samples').glob('0*.png'))) == 6 and (tmp_path / 'run/samples/grid.png').exists()
    r = miniai('fid', '--run', 'run', '--n', '8', '--steps', '3')
    assert r.returncode == 0 and 'FID' in r.stdout, r.stderr[-2000:]
    r = miniai('sample', 'run', '--n', '3', '--steps', '4', '--sampler', 'dpmpp_2m', '--out', 'k', '--channels-last')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(list((tmp_path / 'k').glob('0*.png'))) == 3
    r = miniai('fid', '--run', 'run', '--n', '8', '--steps', '2', '--sampler', 'heun', '--channels-last')
    assert r.returncode == 0 and '8 images: FID' in r.stdout, r.stderr[-2000:]
    r = miniai('sample', 'run', '--sampler', 'heun', '--eta', '0.5')
    assert r.returncode == 2 and '--eta is for ddim and euler_a: heun does not take it' in r.stderr.splitlines()[-1]
    r = miniai('fid', '--folder', 'imgs')
    assert r.returncode == 0 and '48 images: FID' in r.stdout, r.stderr[-2000:]
    assert 'imgs: images read as the evaluator takes them, grey and 32x32 (the first is RGB, 32x32)' in r.stdout
    r = miniai('fid', '--folder', 'run/samples')  # the samples, not the grid written beside them
    assert r.returncode == 0 and '6 images: FID' in r.stdout, r.stderr[-2000:]
    assert 'reference: packaged Fashion-MNIST sample, 3,615 training images' in r.stdout


def test_skip_bad(tmp_path, miniai):
    "A folder with every kind of bad file: each refused one is named, and --skip-bad trains on the rest."
    import numpy as np
    from conftest import write_bad_corpus
    fashion_folder(tmp_path / 'imgs', n=24)
    with Image.open(tmp_path / 'imgs/000.png') as im: arr = np.repeat(np.asarray(im.convert('L'))[..., None], 3, -1)
    good, bad = write_bad_corpus(tmp_path / 'imgs', arr)
    r = miniai('fid', '--folder', 'imgs')
    assert r.returncode == 2 and '--skip-bad' in r.stderr.splitlines()[-1] and any(f'{n}: ' in r.stderr for n in bad)
    r = miniai('fid', '--folder', 'imgs', '--skip-bad')
    assert r.returncode == 0 and f'{24 + len(good)} images: FID' in r.stdout, r.stderr[-2000:]
    said = [l for l in r.stderr.splitlines() if 'warning' in l.lower()]  # one plain line names them all
    assert len(said) == 1 and said[0].startswith(f'miniai: warning: skipped {len(bad)} undecodable file(s)'), r.stderr
    assert all(n in said[0] for n in bad)
    r = miniai('train', '--data', 'imgs', '--channels', '1', '--bs', '8', '--epochs', '1', '--skip-bad', '--channels-last',
               '--out', 'run')
    assert r.returncode == 0 and f'imgs: {24 + len(good)} images' in r.stdout, r.stderr[-2000:]
    said = [l for l in r.stderr.splitlines() if 'warning' in l.lower()]
    assert len(said) == 1 and all(n in said[0] for n in bad), r.stderr
    w = torch.load(tmp_path / 'run/checkpoint.pt', weights_only=True)['model']['downs.1.resnets.0.conv1.2.weight']
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()  # --channels-last reached the model


def test_channels_last_and_compile_learn_what_a_plain_run_learns(tmp_path):
    """The speed options change how the model runs, not what it learns: `channels_last` weights and samples match a plain
    run's to rounding (kernels sum in another order), and a compiled run (dynamo's 'eager' backend: the same tracing as
    `--compile`, without building kernels) matches it exactly and saves a checkpoint a plain model loads."""
    from torch._dynamo.utils import counters
    from miniai.jobs import train, generate
    from miniai.runs import RunFolder
    fashion_folder(tmp_path / 'imgs', n=32)
    opts = dict(data=tmp_path / 'imgs', channels=1, bs=8, epochs=1, sample_every=0)
    train(tmp_path / 'plain', **opts)
    train(tmp_path / 'cl', channels_last=True, **opts)
    counters.clear()
    train(tmp_path / 'compiled', compile='eager', **opts)
    assert counters['stats']['unique_graphs'] > 0  # dynamo traced the model
    plain, cl, compiled = (torch.load(tmp_path / d / 'checkpoint.pt', weights_only=True)['model'] for d in ('plain', 'cl', 'compiled'))
    assert plain.keys() == cl.keys() == compiled.keys()
    w = 'downs.1.resnets.0.conv1.2.weight'  # a 3x3 convolution of 16 to 32 channels: its layout shows the memory format
    assert cl[w].is_contiguous(memory_format=torch.channels_last) and not cl[w].is_contiguous() and plain[w].is_contiguous()
    assert RunFolder(tmp_path / 'plain').load_model(channels_last=True)[0].state_dict()[w].is_contiguous(memory_format=torch.channels_last)
    for k in plain:
        torch.testing.assert_close(cl[k], plain[k], rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(compiled[k], plain[k], rtol=0, atol=0)
    x, y = (generate(tmp_path / 'plain', n=4, steps=3, channels_last=c) for c in (False, True))
    torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5)


def test_fid_of_a_folder_streams_to_the_same_score(tmp_path):
    from miniai.jobs import score, image_folder
    from miniai.data import SAMPLE_DIR, load_fashion_mnist, fashion_diffusion_tensors
    from miniai.fid import ImageEval, load_fashion_evaluator
    fashion_folder(tmp_path / 'imgs', n=300)
    res = score(folder=tmp_path / 'imgs')
    ie = ImageEval(load_fashion_evaluator()[:-1], fashion_diffusion_tensors(load_fashion_mnist(SAMPLE_DIR, verbose=False))[0])
    ds = image_folder(tmp_path / 'imgs', 32, 1)
    x = torch.stack([ds[i] for i in range(len(ds))]) - 0.5  # all in memory at once
    assert res['n'] == 300 and abs(res['fid'] - ie.fid(x)) < 1e-3 and abs(res['kid'] - ie.kid(x)) < 1e-4


def test_killed_training_resumes_to_the_same_weights(tmp_path, miniai):
    import time
    fashion_folder(tmp_path / 'imgs')
    args = ('train', '--data', 'imgs', '--channels', '1', '--bs', '8', '--epochs', '4', '--model', 'simple', '--sample-every', '0')
    r = miniai(*args, '--out', 'whole')
    assert r.returncode == 0, r.stderr[-2000:]
    p = console(*args, '--out', 'cut', cwd=tmp_path, background=True)
    while not (tmp_path / 'cut/checkpoint.pt').exists() and p.poll() is None: time.sleep(0.05)
    p.kill(); p.wait()
    r = miniai(*args, '--out', 'cut', '--resume')
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = (torch.load(tmp_path / d / 'checkpoint.pt', weights_only=True) for d in ('whole', 'cut'))
    assert a['epoch'] == b['epoch'] == 3
    for k in a['model']: torch.testing.assert_close(a['model'][k], b['model'][k], rtol=0, atol=0)
    assert [h['epoch'] for h in json.loads((tmp_path / 'cut/history.json').read_text())] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_one_train_per_run_folder(tmp_path, miniai):
    import time
    fashion_folder(tmp_path / 'imgs')
    args = ('train', '--data', 'imgs', '--channels', '1', '--bs', '8', '--epochs', '50', '--out', 'run')
    p = console(*args, cwd=tmp_path, background=True)  # a run that holds the folder's lock
    try:
        while not (tmp_path / 'run/config.json').exists() and p.poll() is None: time.sleep(0.05)
        for extra in ((), ('--resume',)):
            r = miniai(*args, *extra)
            assert r.returncode == 2 and 'another `miniai train` is writing' in r.stderr.splitlines()[-1], r.stderr[-1000:]
    finally: p.kill(); p.wait()
    r = miniai('train', '--data', 'imgs', '--channels', '1', '--bs', '8', '--epochs', '1', '--out', 'run', '--resume')
    assert r.returncode == 2 and 'another `miniai train`' not in r.stderr, r.stderr[-1000:]  # the killed run's lock went: the options
    assert 'other epochs' in r.stderr or 'no checkpoint' in r.stderr          # are checked (and refused) under the lock


def test_user_errors_are_one_line(tmp_path, miniai):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'bad').mkdir(); (tmp_path / 'bad/x.png').write_bytes(b'not a png')
    (tmp_path / 'run').mkdir(); (tmp_path / 'run/config.json').write_text('{}'); (tmp_path / 'run/checkpoint.pt').write_bytes(b'junk')
    cases = [(('train', '--data', 'nowhere'), 'no such folder'), (('train', '--data', 'empty'), 'no images'),
             (('train', '--data', 'bad', '--channels', '1'), 'x.png: not an image'),
             (('train', '--data', 'empty', '--cond'), '--cond needs class labels'),
             (('train', '--out', 'fresh', '--resume'), 'no checkpoint to resume'),
             (('train', '--size', '30'), '--size: for --data folders'), (('train', '--channels', '1', '--skip-bad'), '--channels, --skip-bad'),
             (('sample', 'nowhere'), 'not a `miniai train` run folder'), (('sample', 'run'), 'cannot load this checkpoint'),
             (('fid',), 'either --run or --folder'), (('sample', 'run', '--n', '0'), 'at least 1')]
    for args, msg in cases: fails_in_one_line(miniai, args, msg)
    assert not (tmp_path / 'fresh').exists() and not (tmp_path / 'runs').exists()  # a failed start leaves no folder behind
    args, msg = cases[2]  # an undecodable image, once more through the console script: one line, no traceback
    fails_in_one_line(partial(console, cwd=tmp_path), args, msg)


def test_latent_space_train_sample_fid(tmp_path, vae_dir, miniai):
    fashion_folder(tmp_path / 'imgs')
    r = miniai('train', '--data', 'imgs', '--space', 'latent', '--bs', '16', '--epochs', '1', '--out', 'run')
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((tmp_path / 'run/config.json').read_text())
    assert cfg['space'] == 'latent' and cfg['channels'] == 1 and cfg['latent']['shape'] == [2, 8, 8]
    assert {'latents_train.npy', 'latents_valid.npy'} <= {f.name for f in (tmp_path / 'run').iterdir()}
    r = miniai('train', '--data', 'imgs', '--space', 'latent', '--bs', '16', '--epochs', '1', '--out', 'run', '--resume')
    assert r.returncode == 0 and 'run finished its 1 epoch:' in r.stdout, r.stderr[-2000:]
    r = miniai('sample', 'run', '--n', '4', '--steps', '3')
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(tmp_path / 'run/samples/0000.png') as im: assert im.size == (32, 32)
    r = miniai('fid', '--run', 'run', '--n', '8', '--steps', '3')
    assert r.returncode == 0 and 'FID' in r.stdout, r.stderr[-2000:]
    # another autoencoder from a local folder: SD-shaped, RGB, 4 latent channels
    r = miniai('train', '--data', 'imgs', '--space', 'latent', '--vae', str(vae_dir), '--bs', '16', '--epochs', '1',
               '--out', 'rgb')
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / 'rgb/config.json').read_text())['latent']['shape'] == [4, 4, 4]
    r = miniai('sample', 'rgb', '--n', '2', '--steps', '2')
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(tmp_path / 'rgb/samples/0000.png') as im: assert im.mode == 'RGB'


def test_latent_space_mistakes_are_one_line(tmp_path, miniai):
    fails_in_one_line(miniai, ('train', '--vae', 'somewhere', '--out', 'a'), '--space latent')
    fails_in_one_line(miniai, ('train', '--space', 'latent', '--vae', str(tmp_path / 'nowhere'), '--out', 'b'), 'cannot load this autoencoder')
    fails_in_one_line(miniai, ('train', '--space', 'latent', '--data', '.', '--size', '30', '--out', 'c'), 'multiple of 4')


def test_help_answers_without_importing_torch():
    "`miniai --help` and option mistakes are answered by the standard library alone; the jobs import PyTorch when they run."
    code = ("import sys\nfrom miniai.cli import main\ntry: main(['train', '--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'miniai.jobs', 'diffusers', 'datasets') if m in sys.modules))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == '[]', r.stdout[-500:] + r.stderr[-500:]


def test_the_command_names_are_the_registries():
    "The parser lists names without importing PyTorch; each list is its registry's."
    from miniai.cli import SAMPLER_NAMES, MODEL_NAMES, SPACE_NAMES, PRECISION_NAMES
    from miniai.karras import SAMPLERS
    from miniai.runs import MODELS, SPACES
    from miniai.accel import PRECISIONS
    assert (SAMPLER_NAMES, MODEL_NAMES, SPACE_NAMES, PRECISION_NAMES) == (tuple(SAMPLERS), tuple(MODELS), SPACES, PRECISIONS)


def test_runs_never_collide_and_say_their_choices(tmp_path, miniai):
    "Without --out each run gets its own folder, named for what it is; the first lines say every choice made for the user."
    fashion_folder(tmp_path / 'imgs')
    args = ('train', '--data', 'imgs', '--channels', '1', '--bs', '16', '--epochs', '1', '--sample-every', '0')
    first, second = miniai(*args), miniai(*args)
    assert first.returncode == second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert (tmp_path / 'runs/pixel-unet/checkpoint.pt').exists() and (tmp_path / 'runs/pixel-unet-2/checkpoint.pt').exists()
    lines = second.stdout.splitlines()
    assert lines[0] == 'run folder: runs/pixel-unet-2' and lines[1].startswith('device: cpu (') and 'precision: ' in lines[1]
    assert 'data: 44 training and 4 validation images of 1x32x32' in second.stdout
    assert re.search(r'model: unet, [\d,]+ parameters; batch 16: 2 steps an epoch, 2 in all', second.stdout)
    assert 'note: 2 optimiser steps are few' in second.stdout
    assert lines[-1].startswith('trained 2 steps (epoch 1) in ')
    r = miniai(*args, '--resume')  # the latest run of that name
    assert r.returncode == 0 and 'runs/pixel-unet-2 finished its 1 epoch' in r.stdout, r.stderr[-2000:]


def test_ctrl_c_saves_and_the_run_resumes_to_the_same_weights(tmp_path, miniai):
    """SIGINT mid-run: the step in progress ends, a checkpoint is saved, one line says how to resume (exit 130); resumed, the
    run ends with the weights of a run never stopped."""
    import signal, time
    fashion_folder(tmp_path / 'imgs')
    args = ('train', '--data', 'imgs', '--channels', '1', '--bs', '4', '--epochs', '4', '--sample-every', '0')
    p = subprocess.Popen([sys.executable, '-c', 'from miniai.cli import main; main()', *args, '--out', 'cut'], cwd=tmp_path,
                         env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin', 'MPLBACKEND': 'Agg', 'HOME': str(tmp_path),
                              'OMP_NUM_THREADS': str(torch.get_num_threads())},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (tmp_path / 'cut/history.json').exists() and p.poll() is None: time.sleep(0.02)
    time.sleep(0.2)  # into the second epoch
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130, err[-2000:]
    assert len(err.strip().splitlines()) == 1 and 'Resume with: miniai train' in err and '--out cut --resume' in err, err
    r = miniai(*args, '--out', 'cut', '--resume')
    assert r.returncode == 0, r.stderr[-2000:]
    r = miniai(*args, '--out', 'whole')
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = (torch.load(tmp_path / d / 'checkpoint.pt', weights_only=True)['model'] for d in ('whole', 'cut'))
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_a_warning_is_one_line_once(tmp_path, miniai):
    "Images with transparent pixels, composited each time one is read: said once, as one plain line."
    import numpy as np
    (tmp_path / 'rgba').mkdir()
    for i in range(12):
        a = np.full((32, 32, 4), 200, np.uint8); a[..., 3] = 0; a[8:24, 8:24, 3] = 255
        Image.fromarray(a, 'RGBA').save(tmp_path / 'rgba' / f'{i}.png')
    r = miniai('train', '--data', 'rgba', '--bs', '4', '--epochs', '3', '--sample-every', '0', '--out', 'run')
    assert r.returncode == 0, r.stderr[-2000:]
    said = [l for l in r.stderr.splitlines() if l.strip()]
    assert said == ['miniai: warning: composited images with transparent pixels on a white background'], r.stderr


def test_mistakes_in_paths_answer_within_a_second(tmp_path):
    "A missing folder or run is refused before PyTorch loads."
    import time
    for args, msg in [(('train', '--data', 'nowhere'), 'no such folder'), (('sample', 'nowhere'), 'not a `miniai train` run'),
                      (('fid', '--folder', 'nowhere'), 'no such folder')]:
        t0 = time.perf_counter()
        fails_in_one_line(partial(console, cwd=tmp_path), args, msg)
        assert time.perf_counter() - t0 < 1, args
    assert not any(tmp_path.iterdir())


def test_the_readme_commands_run_in_sequence(tmp_path, miniai, monkeypatch):
    """The Quick start's first command and the commands the README names after it, in order, in one fresh folder (one epoch
    each, few samples, 256 training images): runs do not collide, and each command finds what the one before it wrote."""
    import struct, numpy as np
    from pathlib import Path
    from miniai.data import load_fashion_mnist, IDX_FILES
    dsd, idx = load_fashion_mnist(verbose=False), tmp_path / 'idx'  # a small Fashion-MNIST for the commands to read
    idx.mkdir()
    for split, n in (('train', 256), ('test', 64)):
        ims = np.stack([np.asarray(im) for im in dsd[split]['image'][:n]]); labels = np.array(dsd[split]['label'][:n], np.uint8)
        for name, a in zip(IDX_FILES[split], (ims, labels)):
            (idx / name).write_bytes(struct.pack('>BBBB', 0, 0, 8, a.ndim) + struct.pack(f'>{a.ndim}I', *a.shape) + a.tobytes())
    monkeypatch.setenv('MINIAI_FASHION_MNIST', str(idx))
    readme = (Path(__file__).parents[1] / 'README.md').read_text()
    start = readme.split('## Quick start')[1].split('\n## ')[0]
    cmds = [c.split() for c in re.findall(r'`(miniai [^`]*)`', start) if '--help' not in c]
    cmds.insert(0, ['miniai', 'train'])  # the first Quick start line: `pip install -e . && miniai train`
    assert len(cmds) >= 4, cmds
    for cmd in cmds:
        extra = {'train': ['--epochs', '1', '--sample-every', '0'], 'classify': ['--epochs', '1'],
                 'sample': ['--n', '4', '--steps', '2'], 'fid': ['--n', '8', '--steps', '2']}[cmd[1]]
        r = miniai(*cmd[1:], *extra)
        assert r.returncode == 0, (cmd, r.stderr[-2000:])


def test_a_finished_run_shares_as_config_and_weights(tmp_path, miniai):
    "A finished run writes its weights alone and a model card; a folder of config.json and model.safetensors samples as it."
    import shutil
    fashion_folder(tmp_path / 'imgs')
    r = miniai('train', '--data', 'imgs', '--channels', '1', '--bs', '16', '--epochs', '1', '--sample-every', '0', '--out', 'run')
    assert r.returncode == 0, r.stderr[-2000:]
    (tmp_path / 'shared').mkdir()
    for f in ('config.json', 'model.safetensors'): shutil.copy(tmp_path / 'run' / f, tmp_path / 'shared')
    from miniai.jobs import generate
    torch.testing.assert_close(generate(tmp_path / 'shared', n=4, steps=3), generate(tmp_path / 'run', n=4, steps=3), rtol=0, atol=0)
    r = miniai('fid', '--run', 'run', '--n', '8', '--steps', '2')
    assert r.returncode == 0, r.stderr[-2000:]
    card = (tmp_path / 'run/README.md').read_text()
    assert card.startswith('# run\n') and 'made by `miniai train --out run --model unet' in card and '- final loss: ' in card
    assert re.search(r'- FID [\d.]+, KID [\d.-]+: 8 samples by ddim in 2 steps', card), card
