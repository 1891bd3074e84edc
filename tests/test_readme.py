import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_readme_is_generated_from_index(tmp_path):
    "README.md is nbs/index.ipynb rendered to markdown: regenerate it (see Contributing) after editing the notebook."
    subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'markdown', str(ROOT / 'nbs/index.ipynb'),
                    '--output-dir', str(tmp_path), '--output', 'README'], check=True, capture_output=True)
    assert (tmp_path / 'README.md').read_text() == (ROOT / 'README.md').read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / 'README.md').read_text().splitlines()
    assert sum(l.startswith('pip install -e ".[dev]"') for l in readme) == 1
    assert 'pytest' in next(l for l in readme if l.startswith('pip install -e ".[dev]"'))
