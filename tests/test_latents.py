import io, json, os, subprocess, sys, tarfile, time, warnings
import numpy as np, pytest, torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision.io import encode_jpeg
from miniai.data import photo_crops
from miniai.latents import (FILE_LIST, ImageFolder, ImageError, list_images, cache_latents, extract_tar,
                            latent_stats, load_image)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp('imgs')
    crops, _ = photo_crops(40, size=32, seed=0)
    for i, im in enumerate(crops):
        (d / f'sub{i % 3}').mkdir(exist_ok=True)
        (d / f'sub{i % 3}' / f'{i:03d}.jpg').write_bytes(encode_jpeg(im, quality=90).numpy().tobytes())
    return d


BUILD = """
import sys, time, torch
from torch.utils.data import DataLoader
from miniai.latents import ImageFolder, cache_latents
from diffusers import AutoencoderKL
class Slow(ImageFolder):
    def __getitem__(self, i):
        time.sleep(0.05)
        return super().__getitem__(i)
ds = Slow(sys.argv[1], size=32)
cache_latents(DataLoader(ds, 4), AutoencoderKL.from_pretrained(sys.argv[2]).eval(), sys.argv[3])
"""


def test_killed_cache_build_resumes_to_identical_bytes(folder, vae_dir, vae, tmp_path):
    path = tmp_path / 'lat.npy'
    p = subprocess.Popen([sys.executable, '-c', BUILD, str(folder), str(vae_dir), str(path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = tmp_path / 'lat.npy.json'
    t0 = time.time()
    while time.time() - t0 < 120:
        if meta.exists() and json.loads(meta.read_text())['done'] >= 8: break
        time.sleep(0.02)
    p.kill(); p.wait()
    done = json.loads(meta.read_text())['done']
    assert 8 <= done < 40 and not path.exists() and (tmp_path / 'lat.npy.partial').exists()
    ds = ImageFolder(folder, size=32)
    lat = cache_latents(DataLoader(ds, 4), vae, path)
    whole = cache_latents(DataLoader(ds, 4), vae, tmp_path / 'whole.npy')
    assert lat.shape == (40, 4, 4, 4) and lat.mode == 'r'
    assert path.read_bytes() == (tmp_path / 'whole.npy').read_bytes()
    assert not (tmp_path / 'lat.npy.partial').exists() and json.loads(meta.read_text())['done'] == 40
    assert cache_latents(DataLoader(ds, 4), vae, path).filename == lat.filename  # complete: reopened, not rebuilt


def test_mismatched_cache_is_refused(folder, vae, tmp_path):
    ds = ImageFolder(folder, size=32)
    cache_latents(DataLoader(ds, 8), vae, tmp_path / 'lat.npy')
    with pytest.raises(ValueError, match='dtype'): cache_latents(DataLoader(ds, 8), vae, tmp_path / 'lat.npy', dtype=np.float16)
    with pytest.raises(ValueError, match='shape'): cache_latents(DataLoader(ImageFolder(folder, size=64), 8), vae, tmp_path / 'lat.npy')
    other = TensorDataset(torch.rand(40, 3, 32, 32))
    with pytest.raises(ValueError, match='source'): cache_latents(DataLoader(other, 8), vae, tmp_path / 'lat.npy')
    with pytest.raises(ValueError, match='fixed order'): cache_latents(DataLoader(ds, 8, shuffle=True), vae, tmp_path / 'x.npy')
    cache_latents(DataLoader(Subset(ds, range(20)), 8), vae, tmp_path / 'half.npy')
    with pytest.raises(ValueError, match='source'):  # same shape, other items
        cache_latents(DataLoader(Subset(ds, range(20, 40)), 8), vae, tmp_path / 'half.npy')

    class Opaque(Dataset):
        def __len__(self): return 4
        def __getitem__(self, i): return torch.rand(3, 32, 32)
    with pytest.raises(TypeError, match='cannot tell which items'): cache_latents(DataLoader(Opaque(), 2), vae, tmp_path / 'o.npy')


def test_cache_stats_normalise(folder, vae, tmp_path):
    lat = cache_latents(DataLoader(ImageFolder(folder, size=32), 8), vae, tmp_path / 'lat.npy')
    mean, std = latent_stats(lat)
    z = (torch.from_numpy(np.asarray(lat)) - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3), correction=0), torch.ones(4), atol=1e-4, rtol=0)


def test_bad_files(tmp_path):
    crops, _ = photo_crops(1, size=24, seed=0)
    arr = crops[0].permute(1, 2, 0).numpy()
    Image.fromarray(arr).convert('CMYK').save(tmp_path / 'cmyk.jpg')
    Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(tmp_path / 'sixteen.png')
    Image.fromarray(arr).convert('RGBA').save(tmp_path / 'rgba.png')
    Image.fromarray(arr).convert('L').save(tmp_path / 'grey.png')
    Image.fromarray(arr[:3, :4]).save(tmp_path / 'tiny.png')
    jpg = encode_jpeg(crops[0]).numpy().tobytes()
    (tmp_path / 'empty.jpg').write_bytes(b''); (tmp_path / 'truncated.jpg').write_bytes(jpg[:len(jpg) // 2])
    (tmp_path / 'text.png').write_text('not an image')
    for name in ('cmyk.jpg', 'sixteen.png', 'rgba.png', 'grey.png', 'tiny.png'):
        im = load_image(tmp_path / name, 16)
        assert im.shape == (3, 16, 16) and im.dtype == torch.float32 and 0 <= im.min() and im.max() <= 1, name
    cmyk, rgb = load_image(tmp_path / 'cmyk.jpg', 24), crops[0].float() / 255
    assert (cmyk - rgb).abs().mean() < 0.05  # converted to RGB, not left inverted or in the wrong channels
    assert abs(load_image(tmp_path / 'sixteen.png', 24).mean() - rgb[0].mean()) < 0.01  # scaled by 65535, not 255
    for name in ('empty.jpg', 'truncated.jpg', 'text.png'):
        with pytest.raises(ImageError, match=f'{name}: cannot decode'): load_image(tmp_path / name, 16)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ds = ImageFolder(tmp_path, size=16, on_error='skip')
    w = [o for o in w if 'skipped' in str(o.message)]  # torchvision's own deprecation notices aside
    assert len(ds) == 5 and len(w) == 1
    assert all(n in str(w[0].message) for n in ('empty.jpg', 'truncated.jpg', 'text.png'))
    with pytest.raises(ImageError, match='empty.jpg'): [x for x in ImageFolder(tmp_path, size=16)]
    (tmp_path / 'sub').mkdir()
    with pytest.raises(FileNotFoundError, match='no images'): ImageFolder(tmp_path / 'sub')


def test_file_list_cache_refreshes(folder, tmp_path):
    import shutil
    d = tmp_path / 'copy'; shutil.copytree(folder, d)
    assert len(list_images(d)) == 40 and (d / FILE_LIST).exists()
    assert len(list_images(d)) == 40  # from the cache
    shutil.copy(d / 'sub0' / '000.jpg', d / 'sub1' / 'added.jpg')
    assert len(list_images(d)) == 41
    (d / 'sub2' / 'deeper').mkdir(); shutil.copy(d / 'sub0' / '000.jpg', d / 'sub2' / 'deeper' / 'x.png')
    files = list_images(d)
    assert len(files) == 42 and d / 'sub2' / 'deeper' / 'x.png' in files
    (d / FILE_LIST).write_bytes(b'damaged')
    assert len(list_images(d)) == 42


def test_tar_extraction_refuses_escaping_members(tmp_path):
    evil = tmp_path / 'evil.tar'
    with tarfile.open(evil, 'w') as tf:
        for name in ('ok/a.txt', '../escaped.txt'):
            info = tarfile.TarInfo(name); data = b'x'; info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.raises(tarfile.FilterError): extract_tar(evil, tmp_path / 'out')
    assert not (tmp_path / 'escaped.txt').exists()
