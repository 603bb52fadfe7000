"""Accuracy by engine, voice and channel: in evaluate's reports and in train's test metrics."""

import json

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_CLASSES, compose_train, make_kaggle_folder
from speechcls.audio import load_clip
from speechcls.evaluate import evaluate
from speechcls.inference import load_classifier
from speechcls.train import train

# test_0 ... test_4 of the tiny folder (targets down go up down go).
CONDITIONS = {
    "engine": ["espeak", "kokoro", "espeak", "kokoro", "espeak"],
    "voice": ["en-us+m4", "jf_nezumi 1.000", "en-us+m4", "jf_nezumi 1.000", "en+f3"],
    "channel": ["clean", "phone", "phone", "small_room", "clean"],
}


@pytest.fixture(scope="module")
def labelled_root(tmp_path_factory):
    """The tiny folder with test labels that name each clip's engine, voice and channel."""
    root = make_kaggle_folder(tmp_path_factory.mktemp("conditions"))
    answers = pd.read_csv(root / "test_labels.csv").assign(**CONDITIONS)
    answers.to_csv(root / "test_labels.csv", index=False)
    return root


def test_evaluate_reports_accuracy_per_engine_voice_and_channel(tmp_path, labelled_root, capsys):
    # Answers: down go up down go. Predicted: down go down down up -> right: 1 1 0 1 0.
    submission = pd.read_csv(labelled_root / "test_labels.csv")[["file_name", "target"]]
    submission.assign(target=["down", "go", "down", "down", "up"]).to_csv(tmp_path / "submission.csv", index=False)
    cfg = compose_train(
        tmp_path, f"data.root={labelled_root}", f"submission={tmp_path / 'submission.csv'}", "data.test_csv=test_labels.csv",
        config_name="evaluate",
    )

    metrics = evaluate(cfg)

    expected = {
        "accuracy/engine/espeak": 1 / 3, "accuracy/engine/kokoro": 1.0,
        "accuracy/voice/en+f3": 0.0, "accuracy/voice/en-us+m4": 1 / 2, "accuracy/voice/jf_nezumi 1.000": 1.0,
        "accuracy/channel/clean": 1 / 2, "accuracy/channel/phone": 1 / 2, "accuracy/channel/small_room": 1.0,
    }  # fmt: skip
    assert {name: value for name, value in metrics.items() if "/" in name} == pytest.approx(expected)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["metrics"]["accuracy/engine/kokoro"] == 1.0
    table = pd.read_csv(tmp_path / "run" / "accuracy_by_condition.csv")
    assert table[table.condition == "engine"][["value", "clips"]].values.tolist() == [["espeak", 3], ["kokoro", 2]]
    wrong = pd.read_csv(tmp_path / "run" / "misclassified.csv")
    assert wrong["engine"].tolist() == ["espeak", "espeak"]
    out = capsys.readouterr().out
    assert "engine:" in out and "kokoro: 1.0000 (2 clips)" in out


def test_train_writes_the_test_accuracy_of_each_engine(tmp_path, labelled_root):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={labelled_root}", "data.test_csv=test_labels.csv",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "optimizer.lr=1e-3", "callbacks.last_checkpoint=null",
    )
    train(cfg)

    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    classifier = load_classifier(summary["best_checkpoint"]).eval()
    answers = pd.read_csv(labelled_root / "test_labels.csv")
    waves = torch.stack([load_clip(labelled_root / "audio_files" / name) for name in answers["file_name"]])
    with torch.inference_mode():
        predicted = [TINY_CLASSES[i] for i in classifier(waves).argmax(dim=1).tolist()]
    right = answers.assign(right=[p == t for p, t in zip(predicted, answers["target"])]).groupby("engine")["right"]
    for engine, accuracy in right.mean().items():
        assert summary["metrics"][f"test/acc/{engine}"] == pytest.approx(accuracy)
    accumulator = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    accumulator.Reload()
    assert {"test/acc/espeak", "test/acc/kokoro"} <= set(accumulator.Tags()["scalars"])


def test_fast_dev_run_on_labels_with_engines_skips_the_per_engine_accuracy(tmp_path, labelled_root):
    """One test batch is no engine's accuracy: the run ends without test/acc/<engine> (it crashed)."""
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={labelled_root}", "data.test_csv=test_labels.csv", "trainer=debug",
        "data.batch_size=2",
    )
    train(cfg)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["status"] == "ok" and not any(name.startswith("test/acc/") for name in summary["metrics"])
