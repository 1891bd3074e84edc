import io, os, struct, zlib
import numpy as np, pytest, torch
from torch.utils.data import DataLoader, TensorDataset
from PIL import Image
from miniai.data import DataLoaders, photo_crops


@pytest.fixture(autouse=True, scope='session')
def cache_in_tmp(tmp_path_factory):
    "miniai's caches (file lists) go to a temporary folder for the test run, not to the user's."
    os.environ['MINIAI_CACHE'] = str(tmp_path_factory.mktemp('cache'))


@pytest.fixture
def regression_dls():
    "A tiny linear regression problem: 64 points, batches of 16."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.], [-2.], [0.5]]) + 0.1
    ds = TensorDataset(x, y)
    return DataLoaders(DataLoader(ds, batch_size=16, shuffle=True), DataLoader(ds, batch_size=32))


@pytest.fixture(scope='session')
def vae_dir(tmp_path_factory):
    """A tiny randomly initialised `AutoencoderKL` shaped like SD's VAE (RGB in, 4 latent channels, sides divided by 8),
    saved with `save_pretrained` as a diffusers folder: the real loading path, offline (and for subprocesses to load)."""
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp('vae')
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=('DownEncoderBlock2D',) * 4,
                  up_block_types=('UpDecoderBlock2D',) * 4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4).save_pretrained(d)
    return d


@pytest.fixture(scope='session')
def vae(vae_dir):
    "The VAE in `vae_dir`, loaded in eval mode without gradients (its name is the folder, as in a subprocess)."
    from diffusers import AutoencoderKL
    return AutoencoderKL.from_pretrained(vae_dir).eval().requires_grad_(False)


@pytest.fixture(scope='session')
def folder(tmp_path_factory):
    "A folder of 40 JPEG photo crops (32x32) in three subfolders."
    d = tmp_path_factory.mktemp('imgs')
    crops, _ = photo_crops(40, size=32, seed=0)
    for i, im in enumerate(crops):
        (d / f'sub{i % 3}').mkdir(exist_ok=True)
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(d / f'sub{i % 3}' / f'{i:03d}.jpg', quality=90)
    return d


def write_bad_corpus(folder, arr):
    """Write the images a user's folder may hold into `folder`, from the HxWx3 uint8 array `arr`: those that must decode, and
    those that must be refused with a message. Returns (decodable names, {refused name: what the message says})."""
    Image.fromarray(arr).convert('CMYK').save(folder / 'cmyk.jpg')
    Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(folder / 'sixteen.png')
    Image.fromarray(arr).convert('RGBA').save(folder / 'rgba.png')  # opaque
    Image.fromarray(arr).convert('L').save(folder / 'grey.png')
    Image.fromarray(arr[:3, :4]).save(folder / 'tiny.png')
    Image.fromarray(arr[:1, :1]).save(folder / 'one_pixel.png')
    Image.fromarray(arr).save(folder / 'photo.bmp')
    Image.fromarray(arr).save(folder / 'anim.gif', save_all=True, append_images=[Image.fromarray(255 - arr)])
    Image.fromarray(arr).save(folder / 'photo.webp', lossless=True)
    b = io.BytesIO(); Image.fromarray(arr).save(b, 'JPEG'); jpg = b.getvalue()
    (folder / 'empty.jpg').write_bytes(b''); (folder / 'truncated.jpg').write_bytes(jpg[:len(jpg) // 2])
    (folder / 'text.png').write_text('not an image'); (folder / 'text.jpg').write_text('not an image either')
    def chunk(kind, data): return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    (folder / 'bomb.png').write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 20_000, 20_000, 8, 2, 0, 0, 0))
                                     + chunk(b'IDAT', zlib.compress(bytes(1000))) + chunk(b'IEND', b''))
    good = ('cmyk.jpg', 'sixteen.png', 'rgba.png', 'grey.png', 'tiny.png', 'one_pixel.png', 'photo.bmp', 'anim.gif', 'photo.webp')
    bad = {'empty.jpg': 'cannot decode this image (empty file)', 'truncated.jpg': 'cannot decode this image',
           'text.png': 'not an image', 'text.jpg': 'not an image', 'bomb.png': 'refused as a decompression bomb'}
    return good, bad
