import json, subprocess, sys, time
import numpy as np, pytest, torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from miniai.files import ImageFolder
from miniai.latents import cache_latents, latent_stats


BUILD = """
import sys, time, torch
from torch.utils.data import DataLoader
from miniai.files import ImageFolder
from miniai.latents import cache_latents
from diffusers import AutoencoderKL
class Slow(ImageFolder):
    def __getitem__(self, i):
        time.sleep(0.05)
        return super().__getitem__(i)
ds = Slow(sys.argv[1], size=32)
cache_latents(DataLoader(ds, 4), AutoencoderKL.from_pretrained(sys.argv[2]).eval(), sys.argv[3])
"""


def items_done(path):
    "How many items the interrupted cache build at `path` has recorded as encoded (0 before it has begun)."
    try: return int(np.load(path.with_name(path.name + '.done.npy')).sum())
    except (FileNotFoundError, ValueError): return 0


def test_killed_cache_build_resumes_to_identical_bytes(folder, vae_dir, vae, tmp_path):
    path = tmp_path / 'lat.npy'
    p = subprocess.Popen([sys.executable, '-c', BUILD, str(folder), str(vae_dir), str(path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and items_done(path) < 8: time.sleep(0.02)
    p.kill(); p.wait()
    assert 8 <= items_done(path) < 40 and not path.exists() and (tmp_path / 'lat.npy.partial').exists()
    ds = ImageFolder(folder, size=32)
    lat = cache_latents(DataLoader(ds, 4), vae, path)
    cache_latents(DataLoader(ds, 4), vae, tmp_path / 'whole.npy')  # the same build, never stopped
    assert lat.shape == (40, 4, 4, 4) and lat.mode == 'r'
    assert path.read_bytes() == (tmp_path / 'whole.npy').read_bytes()
    assert not (tmp_path / 'lat.npy.partial').exists() and not (tmp_path / 'lat.npy.done.npy').exists()
    assert cache_latents(DataLoader(ds, 4), vae, path).filename == lat.filename  # complete: reopened, not rebuilt
    np.testing.assert_array_equal(np.load(path), lat)  # a real .npy file


SPLIT_BUILD = """
import os, sys, torch
from torch.utils.data import DataLoader
from miniai.files import ImageFolder
from miniai.latents import cache_latents
from diffusers import AutoencoderKL
class DiesInRank1(ImageFolder):
    def __getitem__(self, i):
        if i == 20 and os.environ['RANK'] == '1' and sys.argv[4] == 'die': raise SystemExit('killed')
        return super().__getitem__(i)
torch.distributed.init_process_group('gloo')
cache_latents(DataLoader(DiesInRank1(sys.argv[1], size=32), 4), AutoencoderKL.from_pretrained(sys.argv[2]).eval(), sys.argv[3])
torch.distributed.destroy_process_group()
"""


def test_two_processes_split_the_cache_and_resume_exactly(folder, vae_dir, vae, tmp_path):
    script = tmp_path / 'build.py'
    script.write_text(SPLIT_BUILD)
    def build(path, how):
        return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                               str(script), str(folder), str(vae_dir), str(path), how], capture_output=True, text=True, timeout=300)
    cut = tmp_path / 'cut.npy'
    r = build(cut, 'die')  # rank 1 dies reading the first item of its third batch
    assert r.returncode != 0 and not cut.exists() and 8 <= items_done(cut) < 40, r.stderr[-2000:]
    r = build(cut, 'resume')
    assert r.returncode == 0 and not (tmp_path / 'cut.npy.done.npy').exists(), r.stderr[-2000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes have it, so the sums round the same way
    try: cache_latents(DataLoader(ImageFolder(folder, size=32), 4), vae, tmp_path / 'one.npy')
    finally: torch.set_num_threads(threads)
    assert cut.read_bytes() == (tmp_path / 'one.npy').read_bytes()  # the same bytes as one process building it unbroken


def test_the_same_folder_however_named_and_read(folder, vae, tmp_path, monkeypatch):
    monkeypatch.chdir(folder.parent)
    cache_latents(DataLoader(ImageFolder(folder, size=32), 8), vae, tmp_path / 'lat.npy')
    cache_latents(DataLoader(ImageFolder(folder.name, size=32), 8), vae, tmp_path / 'lat.npy')  # relative: the same source
    with pytest.raises(ValueError, match='source'):  # squashed instead of cropped: other latents of the same files
        cache_latents(DataLoader(ImageFolder(folder, size=32, crop=False), 8), vae, tmp_path / 'lat.npy')


def test_a_cache_of_the_old_raw_format_is_refused(folder, vae, tmp_path):
    ds = ImageFolder(folder, size=32)
    cache_latents(DataLoader(ds, 8), vae, tmp_path / 'lat.npy')
    meta = tmp_path / 'lat.npy.json'
    m = json.loads(meta.read_text()); del m['format']; meta.write_text(json.dumps(m))
    with pytest.raises(ValueError, match='format'): cache_latents(DataLoader(ds, 8), vae, tmp_path / 'lat.npy')


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
    z = (torch.from_numpy(np.array(lat)) - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3), correction=0), torch.ones(4), atol=1e-4, rtol=0)


def test_decode_latents_undoes_the_normalisation(vae):
    from miniai.latents import decode_latents
    torch.manual_seed(0)
    z = torch.randn(2, 4, 4, 4)
    mean, std = torch.tensor([0.5, -1., 0., 2.]), torch.tensor([1., 2., 0.5, 3.])
    with torch.no_grad(): want = ((vae.decode(z).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(decode_latents(vae, (z - mean[:, None, None]) / std[:, None, None], std, mean), want,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decode_latents(vae, z / 5., scale=5.), want, atol=1e-5, rtol=1e-5)
    out = decode_latents(vae, z)
    assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1


def test_a_plain_tensor_dataset_caches_and_is_told_apart(vae, tmp_path):
    "A `DataLoader` over a plain tensor, as the course passes one: cached like a `TensorDataset` of the same tensor."
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lat = cache_latents(DataLoader(x, 4), vae, tmp_path / 'plain.npy')
    np.testing.assert_array_equal(lat, cache_latents(DataLoader(TensorDataset(x), 4), vae, tmp_path / 'wrapped.npy'))
    with pytest.raises(ValueError, match='other source'):
        cache_latents(DataLoader(x.flip(0), 4), vae, tmp_path / 'plain.npy')


def test_latent_space_encodes_decodes_and_round_trips_its_config(vae, vae_dir, tmp_path):
    from miniai.latents import LatentSpace, decode_latents
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    raw = cache_latents(DataLoader(x, 4), vae, tmp_path / 'lat.npy')
    space = LatentSpace.fit(vae, raw)
    z = space.encode(x)
    torch.testing.assert_close(z.mean((0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)  # normalised per channel
    torch.testing.assert_close(z.std((0, 2, 3), correction=0), torch.ones(4), atol=1e-4, rtol=0)
    zn = space.normalise(torch.from_numpy(np.array(raw)))
    assert space.clamp == (zn.min().item(), zn.max().item())
    torch.testing.assert_close(space.decode(z), decode_latents(vae, torch.from_numpy(np.array(raw))))
    assert space.shape(64) == (4, 8, 8)
    with pytest.raises(ValueError, match='size 30: the autoencoder divides sides by 8'): space.shape(30)
    cfg = json.loads(json.dumps(space.to_config()))
    assert cfg['vae'] == str(vae_dir)
    again = LatentSpace.from_config(cfg, device='cpu')
    torch.testing.assert_close(again.decode(z), space.decode(z))
