import json, os, subprocess, sys, warnings, pytest, torch
from pathlib import Path
from torch import nn
import torch.nn.functional as F
from miniai.learner import Learner, Callback, TrainCB
from miniai.callbacks import CheckpointCB, one_cycle
from miniai.accel import MixedPrecision, native_amp_dtype
from miniai.data import DataLoaders

HERE = Path(__file__).parent


def classifier_dls():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=g); y = torch.randint(0, 4, (64,), generator=g)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    return DataLoaders(dl, dl)


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_bf16_autocast_shapes_and_dtypes():
    seen = {}
    def record(m, i, o): seen['conv'] = o.dtype
    model = small_cnn()
    model[0].register_forward_hook(record)
    mp = MixedPrecision(dtype=torch.bfloat16)
    learn = Learner(model, classifier_dls(), F.cross_entropy, lr=0.1, cbs=[mp])
    learn.fit(1, valid=False)
    assert seen['conv'] == torch.bfloat16
    assert learn.preds.dtype == torch.bfloat16 and learn.preds.shape == (16, 4)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.isfinite(learn.loss)


def test_bf16_close_to_fp32():
    losses = {}
    for name, trainer in (('fp32', TrainCB()), ('bf16', MixedPrecision(dtype=torch.bfloat16))):
        class Rec(Callback):
            def before_fit(self, learn): self.l = []
            def after_loss(self, learn): self.l.append(learn.loss.item())
        rec = Rec()
        Learner(small_cnn(), classifier_dls(), F.cross_entropy, lr=0.1, cbs=[trainer, rec]).fit(2, valid=False)
        losses[name] = torch.tensor(rec.l)
    assert (losses['fp32'] - losses['bf16']).abs().max() < 0.05


def test_default_precision_follows_hardware():
    mp = MixedPrecision()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        Learner(small_cnn(), classifier_dls(), F.cross_entropy, cbs=[mp]).fit(1, valid=False)
    assert mp.amp_dtype == native_amp_dtype('cpu')
    if mp.amp_dtype is None: assert any('training in fp32' in str(x.message) for x in w)


def test_fp16_trains_with_loss_scaling_and_checkpoints_the_scaler(tmp_path):
    mp = MixedPrecision(dtype=torch.float16)
    learn = Learner(small_cnn(), classifier_dls(), F.cross_entropy, lr=0.1, cbs=[mp, CheckpointCB(tmp_path / 'ck.pt')])
    learn.fit(1, valid=False)
    assert mp.scaler.is_enabled() and learn.preds.dtype == torch.float16
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    saved = torch.load(tmp_path / 'ck.pt', weights_only=True)['cbs']['MixedPrecision']
    assert saved['scale'] == mp.scaler.get_scale()


def train_single(path):
    "The same regression as accelerate_two_process.py, one process, the combined batch of 16."
    sys.path.insert(0, str(HERE))
    from accelerate_two_process import make_data, make_model
    x, y = make_data()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    model, dls = make_model(), DataLoaders(dl, dl)
    Learner(model, dls, F.mse_loss, lr=0.1, cbs=[TrainCB(), one_cycle(0.1, 3, dls)]).fit(3, valid=False)
    return model


def test_two_processes(tmp_path):
    "Two CPU processes (torchrun, gloo): different shards, averaged gradients, one-cycle over each one's share of the batches, identical weights, = one process."
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MINIAI_OUT': str(tmp_path)}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(HERE / 'accelerate_two_process.py')], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f'rank{i}.json').read_text()) for i in range(2)]
    assert [r['num_processes'] for r in ranks] == [2, 2]
    seen0, seen1 = set(ranks[0]['seen']), set(ranks[1]['seen'])
    assert seen0 and seen1 and not seen0 & seen1 and seen0 | seen1 == set(range(64))
    assert ranks[0]['weight'] == ranks[1]['weight']
    single = train_single(tmp_path)
    torch.testing.assert_close(torch.tensor(ranks[0]['weight']), single.weight.detach(), atol=1e-5, rtol=1e-5)
    assert [r['checkpoint_writes'] for r in ranks] == [3 + 1 + 2, 0]  # only the main process writes checkpoints
    for r in ranks: assert r['resumed'] == r['whole'] == ranks[0]['whole']  # every process resumes to the same weights
    ck = torch.load(tmp_path / 'cut.pt', weights_only=True)
    assert ck['epoch'] == 2 and set(ck['model']) == {'weight', 'bias'}  # the unwrapped model's names, loadable anywhere


def test_make_trainer_by_name():
    from miniai.accel import make_trainer
    assert type(make_trainer('fp32', 3)) is TrainCB and make_trainer('fp32', 3).n_inp == 3
    bf16 = make_trainer('bf16', 2)
    assert isinstance(bf16, MixedPrecision) and bf16.dtype == torch.bfloat16 and bf16.n_inp == 2
    auto = make_trainer('auto', device='cpu')  # 16-bit only where this CPU multiplies it natively
    assert (auto.dtype if isinstance(auto, MixedPrecision) else None) == native_amp_dtype('cpu')
    with pytest.raises(ValueError, match='needs a CUDA GPU'): make_trainer('fp16', device='cpu')
    with pytest.raises(ValueError, match="precision='half'"): make_trainer('half')


def test_native_amp_dtype_needs_native_hardware(monkeypatch):
    "bf16 only where the chip multiplies it natively: a GPU that emulates it (V100, T4) gets fp16; a CPU needs the flags."
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: including_emulation)
    assert native_amp_dtype('cuda') == torch.float16
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)
    assert native_amp_dtype('cuda') == torch.bfloat16
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: {'avx2': True, 'avx512f': True})
    assert native_amp_dtype('cpu') is None
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: {'avx2': True, 'avx512_bf16': True})
    assert native_amp_dtype('cpu') == torch.bfloat16
