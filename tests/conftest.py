import pytest, torch
from torch.utils.data import DataLoader, TensorDataset
from torchvision.io import encode_jpeg
from miniai.data import DataLoaders, photo_crops


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
        (d / f'sub{i % 3}' / f'{i:03d}.jpg').write_bytes(encode_jpeg(im, quality=90).numpy().tobytes())
    return d
