"""End to end on a folder as real downloads are: odd rates, lengths, channel counts and sample formats."""

import json

import pandas as pd
import soundfile as sf

from conftest import MESSY_FILES, compose_train, make_messy_kaggle_folder
from speechcls.audio import CLIP_SAMPLES, read_audio
from speechcls.predict import predict
from speechcls.run_record import METRICS_FILE
from speechcls.train import train


def test_the_fixture_holds_clips_one_sample_either_side_of_a_second(tmp_path):
    root = make_messy_kaggle_folder(tmp_path / "messy")
    lengths = {len(read_audio(path)) for path in (root / "audio_files").glob("test_*.wav")}
    assert {CLIP_SAMPLES - 1, CLIP_SAMPLES + 1} <= lengths
    subtypes = {sf.info(path).subtype for path in (root / "audio_files").glob("test_*.wav")}
    assert subtypes == {subtype for *_, subtype in MESSY_FILES}


def test_a_messy_folder_trains_tests_and_predicts_with_the_default_data_path(tmp_path):
    root = make_messy_kaggle_folder(tmp_path / "messy")
    # The default data config (cache and on-device batches on), with loader workers for the test split.
    overrides = ["data=kaggle", f"data.root={root}", "data.test_csv=test_labels.csv", "data.num_workers=2"]
    cfg = compose_train(tmp_path, *overrides, "trainer.max_epochs=1", "logger=csv")
    assert cfg.data.cache and cfg.data.on_device

    train(cfg)

    summary = json.loads((tmp_path / "run" / METRICS_FILE).read_text())
    assert summary["status"] == "ok" and 0.0 <= summary["metrics"]["test/acc"] <= 1.0
    assert summary["test_data"] == "test_labels.csv"
    predict_cfg = compose_train(
        tmp_path / "predict", f"data.root={root}", f"ckpt_path={tmp_path / 'run'}", config_name="predict"
    )
    submission = pd.read_csv(predict(predict_cfg))
    sample = pd.read_csv(root / "sample_submission.csv")
    assert submission["file_name"].tolist() == sample["file_name"].tolist()
    assert submission["target"].notna().all()
