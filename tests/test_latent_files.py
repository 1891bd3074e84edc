import subprocess, sys, time
import numpy as np, pytest, torch
import torchvision.transforms as T
from miniai.data import SAMPLE_DIR, load_fashion_mnist_idx
from miniai.files import list_images
from miniai.latent_files import (CLS_LOC, VAL_SOLUTION, LatentFiles, class_names,
                                      encode_folder, file_labels, read_val_solution, sample_stats, fashion_imagenet,
                                      FASHION_WNIDS)


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    return fashion_imagenet(tmp_path_factory.mktemp('imagenet'), n_train=18, n_valid=9, data=SAMPLE_DIR)


def test_labels_from_folders_and_solution_file(tree):
    classes = class_names(tree / CLS_LOC / 'train')
    assert set(classes) <= set(FASHION_WNIDS) and classes == sorted(classes)
    train = list_images(tree / CLS_LOC / 'train')
    assert len(train) == 18 and file_labels(train, classes).tolist() == [classes.index(f.parent.name) for f in train]
    val = list_images(tree / CLS_LOC / 'val')
    solution = read_val_solution(tree / VAL_SOLUTION)
    yv = load_fashion_mnist_idx(SAMPLE_DIR)['test']['label'][:9]
    assert len(solution) == 9 and [solution[f.stem] for f in val] == [FASHION_WNIDS[y] for y in yv]
    index = {c: i for i, c in enumerate(FASHION_WNIDS)}
    assert file_labels(val, list(FASHION_WNIDS), solution).tolist() == [index[solution[f.stem]] for f in val]
    with pytest.raises(KeyError, match='val_00000000'): file_labels(val, classes)  # no solution file: the file is named
    with pytest.raises(KeyError, match="'n99999999' is not one"): file_labels(val, classes, {f.stem: 'n99999999' for f in val})
    with pytest.raises(FileNotFoundError, match='no class folders'): class_names(tree / CLS_LOC / 'val')


ENCODE = """
import sys, time
import miniai.latent_files as lc
from diffusers import AutoencoderKL
load = lc.load_image
def slow(*a, **k):
    time.sleep(0.3)
    return load(*a, **k)
lc.load_image = slow
vae = AutoencoderKL.from_pretrained(sys.argv[3]).eval().requires_grad_(False)
lc.encode_folder(sys.argv[1], sys.argv[2], vae, size=64, bs=2, workers=0, progress=False)
"""


def test_encode_folder_resumes_after_a_kill(tree, vae_dir, vae, tmp_path):
    src = tree / CLS_LOC / 'train'
    assert encode_folder(src, tmp_path / 'whole', vae, size=64, bs=4, workers=0, progress=False) == 18
    whole = list_images(tmp_path / 'whole', exts=('.npy',))
    p = subprocess.Popen([sys.executable, '-c', ENCODE, str(src), str(tmp_path / 'part'), str(vae_dir)])
    try:
        deadline = time.time() + 120
        while len(list((tmp_path / 'part').rglob('*.npy'))) < 4:
            assert p.poll() is None and time.time() < deadline, 'the encoding run ended before it could be killed'
            time.sleep(0.05)
    finally: p.kill(); p.wait()
    done = len(list((tmp_path / 'part').rglob('*.npy')))
    assert 4 <= done < 18
    assert encode_folder(src, tmp_path / 'part', vae, size=64, bs=4, workers=0, progress=False) == 18 - done
    part = list_images(tmp_path / 'part', exts=('.npy',))
    assert [f.relative_to(tmp_path / 'part') for f in part] == [f.relative_to(tmp_path / 'whole') for f in whole]
    for a, b in zip(part, whole):
        za, zb = np.load(a), np.load(b)
        assert za.dtype == np.float16 and za.shape == (4, 8, 8)
        np.testing.assert_allclose(za.astype(np.float32), zb.astype(np.float32), atol=2e-3, rtol=2e-3)  # one float16 step
    assert not list((tmp_path / 'part').rglob('*.tmp'))
    assert encode_folder(src, tmp_path / 'part', vae, size=64, progress=False) == 0
    with pytest.raises(ValueError, match=r'holds other size \(size: 64 here, 32 asked\)'):
        encode_folder(src, tmp_path / 'part', vae, size=32, progress=False)  # never a mix of two encodings
    with pytest.raises(ValueError, match='dtype'): encode_folder(src, tmp_path / 'part', vae, size=64, dtype=np.float32, progress=False)


def test_encode_folder_bad_image(tree, vae, tmp_path):
    src = tmp_path / 'src'
    (src / 'a').mkdir(parents=True)
    good = next((tree / CLS_LOC / 'train').rglob('*.png'))
    (src / 'a' / 'good.png').write_bytes(good.read_bytes())
    (src / 'a' / 'bad.png').write_bytes(good.read_bytes()[:100])
    with pytest.raises(Exception, match='bad.png'):
        encode_folder(src, tmp_path / 'raise', vae, size=64, workers=0, progress=False)
    with pytest.warns(UserWarning, match=r'skipped 1 .*bad.png'):
        assert encode_folder(src, tmp_path / 'skip', vae, size=64, workers=0, on_error='skip', progress=False) == 1
    assert [f.name for f in (tmp_path / 'skip' / 'a').iterdir()] == ['good.npy']


def test_normalisation_gives_zero_mean_unit_std(tmp_path):
    g = torch.Generator().manual_seed(0)
    scale, shift = torch.tensor([0.5, 2., 5., 1.]), torch.tensor([-1., 3., 0., 7.])
    files = []
    for i in range(300):
        files.append(tmp_path / f'{i}.npy')
        np.save(files[-1], (torch.randn(4, 8, 8, generator=g) * scale[:, None, None] + shift[:, None, None]).half().numpy())
    mean, std = sample_stats(files, n=100)
    torch.testing.assert_close(mean, shift, atol=0.1, rtol=0.05)
    torch.testing.assert_close(std, scale, atol=0.05, rtol=0.05)
    x = torch.stack([x for x, _ in LatentFiles(files, torch.zeros(300, dtype=torch.long), T.Normalize(mean, std))])
    assert x.dtype == torch.float32
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(4), atol=0.03, rtol=0)
    torch.testing.assert_close(x.std((0, 2, 3)), torch.ones(4), atol=0.03, rtol=0)
