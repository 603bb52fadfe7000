import os
import pickle

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, RandomSampler

from conftest import compose_train, write_tone
from speechcls.audio import CLIP_SAMPLES, SAMPLE_RATE, load_clip, read_audio
from speechcls.build_cache import build_caches
from speechcls.data import cache as cache_module
from speechcls.data.cache import FULL_SCALE, MAX_CLIP_FACTOR, WaveCache
from speechcls.data.datamodule import SpeechDataModule
from speechcls.data.device_batches import DeviceBatches
from speechcls.config import CONFIG_DIR
from speechcls.train import train

HALF_STEP = 0.5 / FULL_SCALE  # int16 rounding of a resampled waveform


def make_16k_folder(root, clips_per_class=6, seed=0):
    """A Kaggle-layout folder of 16 kHz PCM_16 tones, short and long: the cache holds them exactly."""
    rng = np.random.default_rng(seed)
    (root / "audio_files").mkdir(parents=True)
    rows = []
    for label_index, label in enumerate(["down", "go", "up"]):
        for i in range(clips_per_class):
            name = f"{label}_{i}.wav"
            write_tone(root / "audio_files" / name, 300 * (label_index + 1), rng.uniform(0.5, 1.5), SAMPLE_RATE, rng)
            rows.append((name, label))
    table = pd.DataFrame(rows, columns=["file_name", "target"])
    table.to_csv(root / "train.csv", index=False)
    table.to_csv(root / "sample_submission.csv", index=False)
    return root


def evaluation_clip(cache, i):
    clip = torch.tensor([i])
    return cache.windows(clip, cache.evaluation_starts[clip], CLIP_SAMPLES)[0]


def wav_paths(root):
    return sorted((root / "audio_files").glob("*.wav"))


def test_cache_round_trips_the_decoded_waveforms(tmp_path, kaggle_root):
    paths = wav_paths(kaggle_root)
    cache = WaveCache.ensure(paths, tmp_path / "cache", SAMPLE_RATE, CLIP_SAMPLES)
    lengths = set()
    for i, path in enumerate(paths):
        decoded, clip = read_audio(path), load_clip(path)
        if sf.info(path).samplerate == SAMPLE_RATE:
            assert torch.equal(cache.wave(i), decoded), path.name
            assert torch.equal(evaluation_clip(cache, i), clip), path.name
            lengths.add(int(np.sign(len(decoded) - CLIP_SAMPLES)))
        else:
            torch.testing.assert_close(cache.wave(i), decoded, atol=HALF_STEP, rtol=0)
            torch.testing.assert_close(evaluation_clip(cache, i), clip, atol=HALF_STEP, rtol=0)
    assert lengths == {-1, 0, 1}  # short, exact and long clips were all compared exactly


def test_a_long_recording_keeps_the_window_around_its_loudest_second(tmp_path):
    rng = np.random.default_rng(0)
    wave = 0.01 * rng.standard_normal(6 * SAMPLE_RATE)
    wave[int(4.2 * SAMPLE_RATE) : int(4.7 * SAMPLE_RATE)] += 0.5 * np.sin(np.arange(SAMPLE_RATE // 2))
    path = tmp_path / "long.wav"
    sf.write(path, wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    cache = WaveCache.ensure([path], tmp_path / "cache", SAMPLE_RATE, CLIP_SAMPLES)
    assert len(cache.wave(0)) == MAX_CLIP_FACTOR * CLIP_SAMPLES
    assert torch.equal(evaluation_clip(cache, 0), load_clip(path))


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    root = make_16k_folder(tmp_path / "data")
    paths = wav_paths(root)
    first = WaveCache.ensure(paths, tmp_path / "cache", SAMPLE_RATE, CLIP_SAMPLES)

    def no_build(*args):
        raise AssertionError("rebuilt although nothing changed")

    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "build", no_build)
        assert WaveCache.ensure(paths, tmp_path / "cache", SAMPLE_RATE, CLIP_SAMPLES).directory == first.directory
    changed = paths[2]
    write_tone(changed, 1000, 0.9, SAMPLE_RATE, np.random.default_rng(1))
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    second = WaveCache.ensure(paths, tmp_path / "cache", SAMPLE_RATE, CLIP_SAMPLES)
    assert second.directory != first.directory
    assert torch.equal(second.wave(2), read_audio(changed))
    # Other audio settings are another cache too.
    assert WaveCache.ensure(paths, tmp_path / "cache", 8000, 8000).directory not in {first.directory, second.directory}


def test_an_interrupted_build_leaves_no_cache_that_looks_complete(tmp_path, monkeypatch):
    paths = wav_paths(make_16k_folder(tmp_path / "data"))
    cache_dir = tmp_path / "cache"
    decoded = []

    def fail_on_the_fourth_file(path, sample_rate):
        if len(decoded) == 3:
            raise OSError("disk went away")
        decoded.append(path)
        return read_audio(path, sample_rate)

    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "read_audio", fail_on_the_fourth_file)
        with pytest.raises(OSError, match="disk went away"):
            WaveCache.ensure(paths, cache_dir, SAMPLE_RATE, CLIP_SAMPLES)
    assert list(cache_dir.iterdir()) == []
    # A killed build (no cleanup) leaves only a .tmp directory, which is never taken for the cache.
    key = cache_module.cache_key(paths, SAMPLE_RATE, CLIP_SAMPLES)
    leftover = cache_dir / f"waves-{key}.tmp-99999999"
    leftover.mkdir()
    np.save(leftover / "index.npy", np.zeros((1, 3), dtype=np.int64))
    cache = WaveCache.ensure(paths, cache_dir, SAMPLE_RATE, CLIP_SAMPLES)
    assert cache.directory.name == f"waves-{key}" and len(cache) == len(paths)
    assert torch.equal(cache.wave(len(paths) - 1), read_audio(paths[-1]))


def test_workers_receive_the_cache_without_its_samples(tmp_path):
    paths = wav_paths(make_16k_folder(tmp_path / "data"))
    cache = WaveCache.ensure(paths, tmp_path / "cache", SAMPLE_RATE, CLIP_SAMPLES)
    cache.wave(0)  # opens the memory map
    copy = pickle.loads(pickle.dumps(cache))
    assert copy._samples is None and len(pickle.dumps(cache)) < 4096
    assert torch.equal(copy.wave(5), cache.wave(5))


def make_datamodule(tmp_path, root, *overrides):
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={root}", *overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return cfg, datamodule


def test_the_first_batch_features_are_the_same_with_and_without_the_cache(tmp_path):
    root = make_16k_folder(tmp_path / "data")
    cfg, cached = make_datamodule(tmp_path, root, "data.cache=true", "data.on_device=false")
    _, decoding = make_datamodule(tmp_path, root, "data.cache=false", "data.on_device=false")
    assert cached.splits["train"].cache is not None and decoding.splits["train"].cache is None
    features = instantiate(cfg.features)
    for loader in ("train_dataloader", "val_dataloader"):
        torch.manual_seed(0)
        wave, labels = next(iter(getattr(cached, loader)()))
        torch.manual_seed(0)
        expected_wave, expected_labels = next(iter(getattr(decoding, loader)()))
        assert torch.equal(labels, expected_labels)
        assert torch.equal(features(wave), features(expected_wave)), loader


def test_device_batches_match_the_loader_at_evaluation(tmp_path, kaggle_root):
    _, datamodule = make_datamodule(tmp_path, kaggle_root, "data.on_device=true")
    on_device = datamodule.val_dataloader()
    assert isinstance(on_device, DeviceBatches)
    loaded = list(DataLoader(datamodule.splits["val"], batch_size=8))
    assert len(on_device) == len(loaded)
    for (wave, labels), (expected_wave, expected_labels) in zip(on_device, loaded, strict=True):
        assert torch.equal(wave, expected_wave) and torch.equal(labels, expected_labels)


def test_device_batches_place_every_training_clip_whole_or_as_a_full_window(tmp_path):
    # Clip i holds the constant i + 1 (in int16 steps): a window's values tell which clip it is.
    lengths = [4000, 9000, 16000, 20000, 30000, 12000, 16000]
    paths = []
    for i, length in enumerate(lengths):
        paths.append(tmp_path / f"{i}.wav")
        sf.write(paths[-1], np.full(length, i + 1, dtype=np.int16), SAMPLE_RATE, subtype="PCM_16")
    cache = WaveCache.ensure(paths, tmp_path / "cache", SAMPLE_RATE, CLIP_SAMPLES)
    batches = DeviceBatches(cache, list(range(len(paths))), 3, CLIP_SAMPLES, RandomSampler(paths), seed=0)
    assert len(batches) == 3
    first_sample = {i: set() for i in range(len(paths))}
    for _ in range(12):
        seen = []
        for wave, labels in batches:
            assert wave.shape == (len(labels), CLIP_SAMPLES) and wave.dtype == torch.float32
            for window, label in zip(wave, labels.tolist()):
                steps = (window * FULL_SCALE).round()
                nonzero = steps.nonzero().flatten()
                assert set(steps[nonzero].tolist()) == {label + 1}
                assert len(nonzero) == min(lengths[label], CLIP_SAMPLES)  # contiguous, nothing cut
                assert nonzero[-1] - nonzero[0] == len(nonzero) - 1
                first_sample[label].add(int(nonzero[0]))
            seen += labels.tolist()
        assert sorted(seen) == list(range(len(paths)))  # each clip once per epoch
    # Short clips land at varied offsets; long clips always fill the window.
    assert all(len(first_sample[i]) > 5 for i in (0, 1, 5))
    assert first_sample[2] == first_sample[3] == first_sample[4] == {0}


def test_on_device_data_trains_through_lightning(tmp_path, kaggle_root):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer=debug", "data.on_device=true",
        "module.channels_last=true",
    )
    train(cfg)


def test_on_device_without_the_cache_is_a_clear_error(kaggle_root):
    with pytest.raises(ValueError, match="on_device=true needs cache=true"):
        SpeechDataModule(kaggle_root, on_device=True)
    with pytest.raises(ValueError, match="cache=true needs a cache_dir"):
        SpeechDataModule(kaggle_root, cache=True)


def test_the_cache_command_builds_every_split(tmp_path, kaggle_root):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="build_cache",
            overrides=[
                "data=kaggle", f"data.root={kaggle_root}", f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path / 'run'}", "data.test_csv=test_labels.csv",
            ],
        )
    splits = build_caches(instantiate(cfg.data))
    assert sorted(splits) == ["predict", "test", "train", "val"]
    built = sorted(path.name for path in (tmp_path / "data" / "cache").iterdir())
    # The test and prediction files are the same list: one cache.
    assert built == sorted({dataset.cache.directory.name for dataset in splits.values()}) and len(built) == 3
