import gzip, shutil, time, pytest, torch
from miniai.data import load_fashion_mnist, load_fashion_mnist_idx, read_idx, IDXError, SAMPLE_DIR, DataLoaders, inplace
from miniai.files import hub_reachable


def test_packaged_sample_loads():
    dsd = load_fashion_mnist_idx(SAMPLE_DIR)
    assert (len(dsd['train']), len(dsd['test'])) == (3615, 1003)
    assert dsd['train'][0]['image'].size == (28, 28)
    assert set(dsd['test']['label']) == set(range(10))


def test_offline_goes_straight_to_sample(monkeypatch, capsys):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.delenv('MINIAI_FASHION_MNIST', raising=False)
    t = time.perf_counter()
    dsd = load_fashion_mnist()
    assert time.perf_counter() - t < 30
    assert 'packaged sample' in capsys.readouterr().out
    assert len(dsd['train']) == 3615


def test_unreachable_hub_fails_over_at_once(monkeypatch, capsys):
    import huggingface_hub.constants as hc
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
    monkeypatch.delenv('MINIAI_FASHION_MNIST', raising=False)
    monkeypatch.setattr(hc, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(hc, 'ENDPOINT', 'http://127.0.0.1:9')  # the discard port: nothing listens
    t = time.perf_counter()
    assert not hub_reachable()
    load_fashion_mnist()
    assert time.perf_counter() - t < 30
    assert 'packaged sample' in capsys.readouterr().out


def test_local_folder_from_env(monkeypatch, tmp_path, capsys):
    for p in SAMPLE_DIR.iterdir():
        if p.name.startswith('t10k'): shutil.copy(p, tmp_path / p.name)
        elif p.name.endswith('.gz'):  # store the training files uncompressed, as some mirrors do
            (tmp_path / p.name[:-3]).write_bytes(gzip.decompress(p.read_bytes()))
    monkeypatch.setenv('MINIAI_FASHION_MNIST', str(tmp_path))
    dsd = load_fashion_mnist()
    assert str(tmp_path) in capsys.readouterr().out and len(dsd['train']) == 3615


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='train-images-idx3-ubyte'):
        load_fashion_mnist_idx(tmp_path)


@pytest.fixture
def labels_bytes(): return gzip.decompress((SAMPLE_DIR / 't10k-labels-idx1-ubyte.gz').read_bytes())


def test_truncated_gzip(tmp_path, labels_bytes):
    p = tmp_path / 'labels.gz'
    p.write_bytes(gzip.compress(labels_bytes)[:-20])
    with pytest.raises(IDXError, match='labels.gz: cannot be decompressed'): read_idx(p)


def test_corrupt_gzip(tmp_path):
    p = tmp_path / 'labels.gz'
    p.write_bytes(b'\x1f\x8b' + b'garbage' * 10)
    with pytest.raises(IDXError, match='labels.gz'): read_idx(p)


def test_truncated_payload(tmp_path, labels_bytes):
    p = tmp_path / 'labels'
    p.write_bytes(labels_bytes[:-5])
    with pytest.raises(IDXError, match=r'promises shape \(1003,\).*truncated'): read_idx(p)


def test_not_idx(tmp_path):
    p = tmp_path / 'notes'
    p.write_bytes(b'hello world')
    with pytest.raises(IDXError, match='not an IDX file'): read_idx(p)


def test_mismatched_counts(tmp_path, labels_bytes):
    for p in SAMPLE_DIR.glob('*.gz'): shutil.copy(p, tmp_path / p.name)
    cut = bytearray(labels_bytes[:-3]); cut[4:8] = (1000).to_bytes(4, 'big')
    (tmp_path / 't10k-labels-idx1-ubyte.gz').write_bytes(gzip.compress(bytes(cut)))
    with pytest.raises(IDXError, match=r'1000 labels of shape \(\) for 1003 images'): load_fashion_mnist_idx(tmp_path)


def test_read_idx_matches_raw_bytes(labels_bytes, tmp_path):
    p = tmp_path / 'l'; p.write_bytes(labels_bytes)
    assert read_idx(p).tolist() == list(labels_bytes[8:])


def test_from_dd_batches():
    import torchvision.transforms.functional as TF
    dsd = load_fashion_mnist_idx(SAMPLE_DIR)
    @inplace
    def tfm(b): b['image'] = [TF.to_tensor(o) for o in b['image']]
    dls = DataLoaders.from_dd(dsd.with_transform(tfm), batch_size=32)
    x, y = next(iter(dls.valid))
    assert x.shape == (64, 1, 28, 28) and y.dtype == torch.int64
    assert len(dls.train) == 3615 // 32
