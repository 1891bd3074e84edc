"""Render every notebook to HTML with `jupyter nbconvert` and open each page in headless Chromium: every figure the
notebook's saved outputs hold must load as an image with a size, and every table (markdown, HTML or a `Summary`) must
appear. Needs `chromium` (Debian package) on PATH; pandoc is optional.

    python .ci/check_docs.py [NOTEBOOK ...]   # default: nbs/*.ipynb; pages are written to _docs_check/
"""
import json, re, shutil, subprocess, sys, tempfile
from html.parser import HTMLParser
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.setAttribute('data-check', JSON.stringify({
    images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
    tables: document.querySelectorAll('table').length}));
});
</script>"""


def expected(nb_path):
    "Figures and tables in a notebook's saved outputs and markdown."
    nb = nbformat.read(nb_path, as_version=4)
    figs = tables = 0
    for c in nb.cells:
        if c.cell_type == 'markdown': tables += len(re.findall(r'^\|?[ :]*-{3,}[ :]*\|', c.source, re.M))
        for o in c.get('outputs', []):
            data = o.get('data', {})
            figs += 'image/png' in data or 'image/jpeg' in data
            if 'text/html' in data: tables += ''.join(data['text/html']).count('<table')
            elif 'text/markdown' in data: tables += len(re.findall(r'^\|?[ :]*-{3,}[ :]*\|', ''.join(data['text/markdown']), re.M))
    return figs, tables


class CheckAttr(HTMLParser):
    "Reads the `data-check` attribute the probe script sets on <body>."
    result = None
    def handle_starttag(self, tag, attrs):
        if tag == 'body' and dict(attrs).get('data-check'): self.result = json.loads(dict(attrs)['data-check'])


def check(nb_path, out_dir, chromium):
    subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'html', '--output-dir', str(out_dir), str(nb_path)],
                   check=True, capture_output=True)
    page = out_dir / f'{nb_path.stem}.html'
    page.write_text(page.read_text().replace('</body>', PROBE + '</body>'))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu', f'--user-data-dir={profile}',
                              '--virtual-time-budget=10000', '--dump-dom', page.as_uri()],
                             check=True, capture_output=True, text=True, timeout=120).stdout
    parser = CheckAttr(); parser.feed(dom)
    return expected(nb_path), parser.result


def main():
    chromium = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    if not chromium: sys.exit("check_docs: no chromium on PATH. Install it (Debian: apt install chromium) and run again.")
    nbs = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    out_dir = ROOT / '_docs_check'; out_dir.mkdir(exist_ok=True)
    failures = []
    print(f"{'notebook':28}{'figures':>9}{'loaded':>8}{'tables':>8}{'found':>7}")
    for nb in nbs:
        (figs, tables), got = check(nb, out_dir, chromium)
        if got is None: failures.append(f'{nb.name}: the page did not finish loading'); continue
        print(f"{nb.name:28}{figs:>9}{got['loaded']:>8}{tables:>8}{got['tables']:>7}")
        if got['loaded'] < figs or got['images'] > got['loaded']:
            failures.append(f"{nb.name}: {figs} figures saved, {got['loaded']} of {got['images']} images rendered")
        if got['tables'] < tables: failures.append(f"{nb.name}: {tables} tables expected, {got['tables']} rendered")
    if failures: sys.exit('check_docs failed:\n  ' + '\n  '.join(failures))
    print(f'all {len(nbs)} notebooks render with their figures and tables; pages in {out_dir}')


if __name__ == '__main__': main()
