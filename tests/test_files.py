import io, json, os, re, tarfile, warnings
import numpy as np, pytest, torch
from PIL import Image
from miniai.data import photo_crops
from conftest import write_bad_corpus
from miniai.files import ImageFolder, file_list_path, ImageError, atomic_write, extract_tar, list_images, load_image, write_json


def test_bad_files(tmp_path):
    crops, _ = photo_crops(1, size=24, seed=0)
    good, bad = write_bad_corpus(tmp_path, crops[0].permute(1, 2, 0).numpy())
    for name in good:
        for c in (1, 3):
            im = load_image(tmp_path / name, 16, channels=c)
            assert im.shape == (c, 16, 16) and im.dtype == torch.float32 and 0 <= im.min() and im.max() <= 1, name
    rgb = crops[0].float() / 255
    assert (load_image(tmp_path / 'cmyk.jpg', 24) - rgb).abs().mean() < 0.05  # converted to RGB, not inverted or shuffled
    assert abs(load_image(tmp_path / 'sixteen.png', 24).mean() - rgb[0].mean()) < 0.01  # scaled to [0, 1]
    for name in ('photo.bmp', 'photo.webp', 'rgba.png'):  # lossless: the pixels themselves
        torch.testing.assert_close(load_image(tmp_path / name, 24), rgb, atol=1e-6, rtol=0)
    gif = load_image(tmp_path / 'anim.gif', 24)
    assert (gif - rgb).abs().mean() < 0.05 < (gif - (1 - rgb)).abs().mean()  # the first frame
    for name, why in bad.items():
        with pytest.raises(ImageError, match=re.escape(f'{name}: {why}')) as e: load_image(tmp_path / name, 16)
        assert "on_error='skip'" in str(e.value) and '--skip-bad' in str(e.value)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ds = ImageFolder(tmp_path, size=16, on_error='skip')
    assert len(ds) == len(good) and len(w) == 1
    assert all(n in str(w[0].message) for n in bad)
    with pytest.raises(ImageError, match='bomb.png'): [x for x in ImageFolder(tmp_path, size=16)]  # the first bad file
    (tmp_path / 'sub').mkdir()
    with pytest.raises(FileNotFoundError, match='no images'): ImageFolder(tmp_path / 'sub')


def test_transparent_pixels_composite_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8); rgba[..., 0] = 200; rgba[:, 4:, 3] = 255; rgba[:, :4, 3] = 0
    Image.fromarray(rgba).save(tmp_path / 'half.png')
    with pytest.warns(UserWarning, match='white background'): x = load_image(tmp_path / 'half.png', 8)
    assert (x[:, :, :4] == 1).all()  # transparent: the white background
    torch.testing.assert_close(x[:, :, 4:], torch.tensor([200 / 255, 0, 0])[:, None, None].expand(3, 8, 4))


def test_file_list_cache_refreshes(folder, tmp_path):
    import shutil
    d = tmp_path / 'copy'; shutil.copytree(folder, d)
    assert len(list_images(d)) == 40 and file_list_path(d).exists()
    assert {f.suffix for f in d.rglob('*') if f.is_file()} == {'.jpg'}  # nothing written among the data
    assert len(list_images(d)) == 40  # from the cache
    shutil.copy(d / 'sub0' / '000.jpg', d / 'sub1' / 'added.jpg')
    assert len(list_images(d)) == 41
    (d / 'sub2' / 'deeper').mkdir(); shutil.copy(d / 'sub0' / '000.jpg', d / 'sub2' / 'deeper' / 'x.png')
    files = list_images(d)
    assert len(files) == 42 and d / 'sub2' / 'deeper' / 'x.png' in files
    file_list_path(d).write_bytes(b'damaged')
    assert len(list_images(d)) == 42


def test_file_lists_live_in_the_cache_folder(folder, tmp_path, monkeypatch):
    from miniai.core import cache_dir
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path / 'c'))
    assert cache_dir() == tmp_path / 'c' and file_list_path(folder).is_relative_to(tmp_path / 'c')
    assert file_list_path(folder) == file_list_path(folder / '.' / 'sub0' / '..')  # one list per folder, however named
    assert len(list_images(folder)) == 40 and file_list_path(folder).exists()
    (tmp_path / 'a-file').write_text('')
    monkeypatch.setenv('MINIAI_CACHE', str(tmp_path / 'a-file' / 'c'))  # a cache that cannot be written: no list kept, no error
    assert len(list_images(folder)) == 40 and not file_list_path(folder).exists()


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


def test_tar_extraction_needs_the_data_filter(tmp_path, monkeypatch):
    tar = tmp_path / 'ok.tar'
    with tarfile.open(tar, 'w') as tf:
        info = tarfile.TarInfo('a.txt'); info.size = 1; tf.addfile(info, io.BytesIO(b'x'))
    monkeypatch.delattr(tarfile, 'data_filter')  # as on Python < 3.10.12, whose tarfile has no extraction filters
    with pytest.raises(RuntimeError, match='3.10.12'): extract_tar(tar, tmp_path / 'out')
    assert not (tmp_path / 'out' / 'a.txt').exists()


def test_checked_folder_fails_before_any_work(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / 'a.png')
    (tmp_path / 'b.png').write_bytes(b'not a png')
    assert len(ImageFolder(tmp_path, size=8)) == 2  # unchecked: b.png fails only when read
    with pytest.raises(ImageError, match='b.png: not an image'): ImageFolder(tmp_path, size=8, check=True)


def test_training_imports_no_image_decoder():
    "Diffusion training and sampling import neither TorchCodec nor the datasets library: only decoding a file needs them."
    import subprocess, sys
    code = ("import sys, miniai.diffusion, miniai.unet, miniai.karras, miniai.simple_diffusion; "
            "print(sorted(m for m in ('torchcodec', 'datasets') if m in sys.modules))")
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() == '[]'
