import io
import numpy as np, pytest, torch
import soundfile as sf
from miniai.audio import (MEL_64, SPECIES, AudioError, AudioFolder, HubAudio, MelConfig, audio_to_image, image_to_audio,
                          load_audio, magnitude_convergence, mel_power, spectral_convergence, synthetic_calls,
                          synthetic_spectrograms)

CFG = MelConfig()


def tone(freq, sr=CFG.sr, seconds=CFG.seconds, amp=0.5):
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def peak(audio): return int(mel_power(audio, CFG).mean(1).argmax())


@pytest.mark.parametrize('freq', [440, 3000, 9000])
def test_pure_tone_round_trip_keeps_its_frequency(freq):
    x = tone(freq)
    back = image_to_audio(audio_to_image(x, CFG), CFG)
    assert back.shape == (CFG.n_samples,) and back.dtype == np.float32
    assert abs(peak(back) - peak(x)) <= 1
    img = audio_to_image(x, CFG)
    assert (audio_to_image(back, CFG) - img).abs().mean() < 0.15  # the spectrogram survives; the phase is new


def test_spectral_convergence():
    x = tone(1000) + tone(2500, amp=0.2)
    assert spectral_convergence(x, x, CFG) < 1e-6
    assert spectral_convergence(x, 3 * x, CFG) < 1e-6  # the level is matched
    assert spectral_convergence(x, tone(5000), CFG) > 0.9
    s = np.abs(np.random.default_rng(0).standard_normal((5, 7)))
    assert magnitude_convergence(s, 0.5 * s) < 1e-6 and magnitude_convergence(s, s + 1) > 0.1


@pytest.mark.parametrize('audio', [tone(1000), np.zeros(CFG.n_samples), np.random.default_rng(0).standard_normal(50_000)])
def test_image_in_range_and_shape(audio):
    img = audio_to_image(audio, CFG)
    assert img.shape == (1, CFG.n_mels, CFG.frames) and img.dtype == torch.float32
    assert img.min() >= -0.5 and img.max() <= 0.5
    small = MelConfig(n_mels=64, frames=32, hop=500)
    assert audio_to_image(audio, small).shape == (1, 64, 32)


def test_agrees_with_diffusers_mel():
    Mel = pytest.importorskip('diffusers.pipelines.deprecated.audio_diffusion').Mel
    mel = Mel(x_res=CFG.frames, y_res=CFG.n_mels, sample_rate=CFG.sr, n_fft=CFG.n_fft, hop_length=CFG.hop, top_db=CFG.top_db)
    x = synthetic_calls(1, CFG, seed=3)[0][0]
    mel.load_audio(raw_audio=x)
    theirs = np.asarray(mel.audio_slice_to_image(0)).astype(int)
    ours = ((audio_to_image(x, CFG)[0] + 0.5) * 255).round().int().numpy()
    assert np.abs(theirs - ours).max() <= 1 and (theirs == ours).mean() > 0.99


def test_wrong_rate_stereo_short_and_long_files(tmp_path):
    sf.write(tmp_path / '44k.wav', tone(2000, sr=44_100), 44_100)
    sf.write(tmp_path / '16k.flac', tone(2000, sr=16_000), 16_000)
    sf.write(tmp_path / 'stereo.wav', np.stack([tone(2000), tone(2000, amp=0.1)], 1), CFG.sr)
    sf.write(tmp_path / 'short.ogg', tone(2000, seconds=0.5), CFG.sr)
    sf.write(tmp_path / 'long.wav', tone(2000, seconds=9), CFG.sr)
    for name in ('44k.wav', '16k.flac', 'stereo.wav', 'short.ogg', 'long.wav'):
        x = load_audio(tmp_path / name, CFG)
        assert x.shape == (CFG.n_samples,) and x.dtype == np.float32, name
        assert peak(x) == peak(tone(2000)), name
    stereo = load_audio(tmp_path / 'stereo.wav', CFG)
    np.testing.assert_allclose(stereo, (tone(2000) + tone(2000, amp=0.1))[:CFG.n_samples] / 2, atol=1e-4)  # 16-bit PCM
    short = load_audio(tmp_path / 'short.ogg', CFG)
    assert np.abs(short[int(0.6 * CFG.sr):]).max() == 0  # padded with silence
    assert np.abs(short[:int(0.4 * CFG.sr)]).max() > 0.3


def test_unusable_files_are_named(tmp_path):
    (tmp_path / 'a').mkdir()
    sf.write(tmp_path / 'a' / 'good.wav', tone(1000), CFG.sr)
    sf.write(tmp_path / 'a' / 'empty.wav', np.zeros(0), CFG.sr)
    (tmp_path / 'a' / 'text.wav').write_text('not audio')
    sf.write(tmp_path / 'a' / 'nan.wav', np.full(100, np.nan, dtype=np.float32), CFG.sr, subtype='FLOAT')
    with pytest.raises(AudioError, match='empty.wav: the file holds no samples'): load_audio(tmp_path / 'a' / 'empty.wav', CFG)
    with pytest.raises(AudioError, match='text.wav: cannot read this audio file'): load_audio(tmp_path / 'a' / 'text.wav', CFG)
    with pytest.raises(AudioError, match='nan.wav: .*NaN'): load_audio(tmp_path / 'a' / 'nan.wav', CFG)
    with pytest.raises(AudioError, match='clip 7: cannot read'): load_audio(b'junk', CFG, name='clip 7')
    with pytest.warns(UserWarning, match=r'skipped 3 .*empty.wav.*nan.wav.*text.wav'):
        ds = AudioFolder(tmp_path, CFG, on_error='skip')
    assert [f.name for f in ds.files] == ['good.wav'] and ds.classes == ['a'] and ds[0][1] == 0
    with pytest.raises(AudioError, match='empty.wav'): AudioFolder(tmp_path, CFG)[0]
    (tmp_path / 'none').mkdir()
    with pytest.raises(FileNotFoundError, match='none: no audio files'): AudioFolder(tmp_path / 'none', CFG)


def test_hub_audio_decodes_bytes():
    datasets = pytest.importorskip('datasets')
    buf = io.BytesIO(); sf.write(buf, tone(3000, sr=22_050), 22_050, format='WAV')
    ds = datasets.Dataset.from_dict({'audio': [{'bytes': buf.getvalue(), 'path': 'x.wav'}], 'label': [3]})
    img, label = HubAudio(ds, CFG)[0]
    assert label == 3 and img.shape == (1, CFG.n_mels, CFG.frames)
    torch.testing.assert_close(img, audio_to_image(load_audio(buf.getvalue(), CFG), CFG))


def test_synthetic_calls():
    x, species = synthetic_calls(8, CFG, seed=0)
    assert x.shape == (8, CFG.n_samples) and x.dtype == np.float32
    assert species.tolist() == [0, 1, 2, 3, 0, 1, 2, 3] and len(SPECIES) == 4
    assert np.abs(x).max(1) == pytest.approx(0.8, abs=1e-6)
    np.testing.assert_array_equal(x, synthetic_calls(8, CFG, seed=0)[0])
    assert not np.array_equal(x, synthetic_calls(8, CFG, seed=1)[0])


def test_synthetic_spectrograms_at_64():
    x, species = synthetic_spectrograms(4, MEL_64, seed=0)
    assert x.shape == (4, 1, 64, 64) and species.tolist() == [0, 1, 2, 3]
    assert MEL_64.n_samples == CFG.n_samples and MEL_64.n_fft > MEL_64.hop  # the same 5 s, frames still overlapping
    clips, _ = synthetic_calls(4, MEL_64, seed=0)
    torch.testing.assert_close(x[2], audio_to_image(clips[2], MEL_64))
    # a 3 kHz tone stays in its band through the 64x64 round trip
    a = tone(3000)
    band = lambda audio: int(mel_power(audio, MEL_64).mean(1).argmax())
    assert band(image_to_audio(audio_to_image(a, MEL_64), MEL_64)) == band(a)
