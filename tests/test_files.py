import io, json, tarfile, warnings
import numpy as np, pytest, torch
from PIL import Image
from torchvision.io import encode_jpeg
from miniai.data import photo_crops
from miniai.files import FILE_LIST, ImageFolder, ImageError, atomic_write, extract_tar, list_images, load_image, write_json


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


def test_atomic_write_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / 'sub' / 'run.json'
    write_json(path, {'epoch': 1})  # creates the folder too
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path, 'w') as f:
            f.write('{"epoch": 2, "lo')
            raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {'epoch': 1}
    assert [p.name for p in path.parent.iterdir()] == ['run.json']  # no temporary file left
    write_json(path, {'epoch': 2})
    assert json.loads(path.read_text()) == {'epoch': 2}
