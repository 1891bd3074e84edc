import json, subprocess, sys


def miniai(*args, cwd):
    return subprocess.run([sys.executable, '-c', 'from miniai.cli import main; main()', *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env={'HF_HUB_OFFLINE': '1', 'PATH': '/usr/bin:/bin',
                                                                           'MPLBACKEND': 'Agg', 'HOME': str(cwd)})


def test_classify_end_to_end(tmp_path):
    r = miniai('classify', '--epochs', '1', '--out', 'out', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    history = json.loads((tmp_path / 'out/history.json').read_text())
    assert [h['train'] for h in history] == ['train', 'eval'] and history[-1]['accuracy'] > 0.5
    assert (tmp_path / 'out/history.png').stat().st_size > 1000 and (tmp_path / 'out/classifier.pt').exists()
    import torch
    ck = torch.load(tmp_path / 'out/classifier.pt', weights_only=True)
    assert {'model', 'mean', 'std'} <= set(ck)


def test_missing_data_folder_is_one_clear_line(tmp_path):
    r = miniai('classify', '--data', str(tmp_path / 'nowhere'), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith('miniai: error:') and 'nowhere' in r.stderr


def test_bad_option_values(tmp_path):
    r = miniai('classify', '--epochs', '0', cwd=tmp_path)
    assert r.returncode == 2 and 'at least 1' in r.stderr
