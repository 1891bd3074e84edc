"""`download` and `lsun_bedrooms` against a local HTTP server on 127.0.0.1 that honours range requests and can drop the
connection part-way: the real download path, offline."""
import http.server, io, tarfile, threading, urllib.error
import numpy as np, pytest
from miniai.files import download


class Server(http.server.BaseHTTPRequestHandler):
    "Serves `body` at any path; honours `Range: bytes=N-` (416 past the end); with `cut`, sends only that many bytes."
    body, cut, ranges = b'', None, []
    def do_GET(self):
        rng = self.headers.get('Range')
        start = int(rng.split('=')[1].split('-')[0]) if rng else 0
        type(self).ranges.append(rng)
        if rng and start >= len(self.body):
            self.send_response(416); self.send_header('Content-Range', f'bytes */{len(self.body)}'); self.end_headers()
            return
        self.send_response(206 if rng else 200)
        if rng: self.send_header('Content-Range', f'bytes {start}-{len(self.body) - 1}/{len(self.body)}')
        self.send_header('Content-Length', str(len(self.body) - start))
        self.end_headers()
        self.wfile.write(self.body[start:][:self.cut])
    def log_message(self, *args): pass


@pytest.fixture
def server():
    "A fresh handler class (its own body, cut and log of ranges) served on a free port; yields (handler, base URL)."
    handler = type('Handler', (Server,), dict(ranges=[]))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield handler, f'http://127.0.0.1:{httpd.server_address[1]}'
    httpd.shutdown(); httpd.server_close()


def test_a_cut_download_resumes_with_a_range_request(server, tmp_path):
    handler, url = server
    handler.body = np.random.default_rng(0).bytes(3 << 20)
    handler.cut = (3 << 20) // 2  # the connection drops half-way
    with pytest.raises(OSError, match='Run again to resume'): download(f'{url}/data.bin', tmp_path / 'data.bin')
    part = tmp_path / 'data.bin.part'
    assert 0 < part.stat().st_size < len(handler.body) and not (tmp_path / 'data.bin').exists()
    handler.cut = None
    got = download(f'{url}/data.bin', tmp_path / 'data.bin')
    assert got.read_bytes() == handler.body and not part.exists()
    assert handler.ranges[-1] == f'bytes={(3 << 20) // 2}-'  # the second request asked only for the rest


def test_a_whole_part_file_is_finished_not_refetched(server, tmp_path):
    handler, url = server
    handler.body = b'x' * 1000
    (tmp_path / 'f.bin.part').write_bytes(handler.body)  # a run stopped between the last byte and the rename
    assert download(f'{url}/f.bin', tmp_path / 'f.bin').read_bytes() == handler.body
    (tmp_path / 'g.bin.part').write_bytes(b'x' * 1500)  # longer than the server's file: not ours to guess about
    with pytest.raises(OSError, match='Delete g.bin.part'): download(f'{url}/g.bin', tmp_path / 'g.bin')


def tarball(members):
    "A gzipped tarball in memory of `members`: name -> bytes."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name); info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_lsun_bedrooms_downloads_extracts_once(server, tmp_path, monkeypatch):
    import miniai.latents as latents
    handler, url = server
    handler.body = tarball({'bedroom/0/a.jpg': b'jpeg bytes', 'bedroom/1/b.jpg': b'more bytes'})
    monkeypatch.setattr(latents, 'LSUN_BEDROOMS', f'{url}/bedroom.tgz')
    folder = latents.lsun_bedrooms(tmp_path)
    assert folder == tmp_path / 'bedroom' and (folder / '1' / 'b.jpg').read_bytes() == b'more bytes'
    n = len(handler.ranges)
    assert latents.lsun_bedrooms(tmp_path) == folder and len(handler.ranges) == n  # no second download


def test_lsun_bedrooms_refuses_an_escaping_member(server, tmp_path, monkeypatch):
    import miniai.latents as latents
    handler, url = server
    handler.body = tarball({'bedroom/a.jpg': b'ok', '../outside.txt': b'escaped'})
    monkeypatch.setattr(latents, 'LSUN_BEDROOMS', f'{url}/bedroom.tgz')
    with pytest.raises(tarfile.OutsideDestinationError): latents.lsun_bedrooms(tmp_path / 'root')
    assert not (tmp_path / 'outside.txt').exists() and not (tmp_path / 'root' / 'bedroom.extracted').exists()
