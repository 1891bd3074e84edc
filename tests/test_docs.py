"Every exported function and class has a docstring, and nbdev's `show_doc` (which the docs site renders) shows it."
import importlib, inspect, pytest
from nbdev.showdoc import show_doc
from miniai._modidx import d

MODULES = sorted(d['syms'])


@pytest.mark.parametrize('modname', MODULES)
def test_exports_are_documented(modname):
    mod = importlib.import_module(modname)
    objs = [(n, getattr(mod, n)) for n in mod.__all__]
    objs = [(n, o) for n, o in objs if (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == modname]
    assert objs, f'{modname} exports no functions or classes'
    undocumented = [n for n, o in objs if not (o.__doc__ or '').strip()]
    assert not undocumented, f'{modname}: no docstring for {undocumented}'
    for n, o in objs:
        md = show_doc(o)._repr_markdown_()
        assert f'### {n}' in md and o.__doc__.strip().splitlines()[0].strip()[:40] in md, n


def test_quarto_config_matches_settings(tmp_path):
    "nbs/nbdev.yml and nbs/_quarto.yml are what nbdev generates from settings.ini, so `nbdev_docs` builds the site as committed."
    import shutil, subprocess, sys
    from pathlib import Path
    root = Path(__file__).parents[1]
    shutil.copy(root / 'settings.ini', tmp_path); (tmp_path / 'nbs').mkdir()
    subprocess.run([sys.executable, '-c', 'from nbdev.quarto import refresh_quarto_yml; refresh_quarto_yml()'], cwd=tmp_path,
                   check=True, capture_output=True)
    for f in ('nbdev.yml', '_quarto.yml'):
        assert (tmp_path / 'nbs' / f).read_text() == (root / 'nbs' / f).read_text(), f'regenerate nbs/{f}'
    assert (root / 'nbs/styles.css').exists()
