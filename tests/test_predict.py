import shutil

import pandas as pd
import pytest
import torch

from conftest import TINY_CLASSES, compose_train
from speechcls.audio import load_clip, shift
from speechcls.checkpoints import resolve_checkpoint
from speechcls.inference import load_classifier
from speechcls.predict import predict
from speechcls.submission import SubmissionError, check_submission, write_submission
from speechcls.tutorial_baseline import predict_per_file


def expected_labels(run, root, files):
    """The checkpoint's own labels for `files`, one clip at a time, by hand."""
    classifier = load_classifier(resolve_checkpoint(run, run)).eval()
    with torch.inference_mode():
        logits = classifier(torch.stack([load_clip(root / "audio_files" / name) for name in files]))
    return [classifier.classes[i] for i in logits.argmax(dim=1).tolist()]


def test_predict_writes_a_valid_submission_in_sample_order(tmp_path, kaggle_root, tiny_run):
    folder = tmp_path / "kaggle"
    shutil.copytree(kaggle_root, folder)
    sample = pd.read_csv(folder / "sample_submission.csv")
    sample = sample.iloc[::-1]  # not the alphabetical order: the sample's order must be kept
    sample.to_csv(folder / "sample_submission.csv", index=False)
    cfg = compose_train(
        tmp_path, f"data.root={folder}", f"ckpt_path={tiny_run}", "save_probs=true", config_name="predict"
    )

    output = predict(cfg)

    assert output == tmp_path / "run" / "submission.csv"
    submission = pd.read_csv(output)
    assert list(submission.columns) == ["file_name", "target"]
    assert submission["file_name"].tolist() == sample["file_name"].tolist()
    assert submission["target"].tolist() == expected_labels(tiny_run, folder, sample["file_name"])
    probabilities = pd.read_csv(output.with_name("submission_probs.csv"))
    assert list(probabilities.columns) == ["file_name", *TINY_CLASSES]
    assert probabilities[TINY_CLASSES].sum(axis=1).round(4).eq(1).all()
    assert not list(output.parent.glob(".*tmp*"))


def test_classes_come_from_the_checkpoint_not_from_the_data(tmp_path, kaggle_root, tiny_run):
    # A test-only folder: no train.csv to derive classes from; and `best` as the checkpoint.
    folder = tmp_path / "kaggle"
    shutil.copytree(kaggle_root, folder)
    (folder / "train.csv").unlink()
    cfg = compose_train(
        tmp_path, f"data.root={folder}", "ckpt_path=best", f"runs_dir={tiny_run.parent}", config_name="predict"
    )

    submission = pd.read_csv(predict(cfg))

    assert submission["target"].tolist() == expected_labels(tiny_run, folder, submission["file_name"])


def test_a_run_directory_resolves_to_its_best_checkpoint(tiny_run):
    assert resolve_checkpoint(tiny_run, tiny_run).name.startswith("epoch")
    assert load_classifier(resolve_checkpoint(tiny_run, tiny_run)).classes == TINY_CLASSES


def test_submission_missing_rows_or_with_unknown_labels_is_rejected(tmp_path):
    sample = pd.DataFrame({"file_name": ["a.wav", "b.wav", "c.wav"], "target": "go"})
    good = pd.DataFrame({"file_name": ["a.wav", "b.wav", "c.wav"], "target": ["go", "up", "go"]})
    check_submission(good, sample["file_name"], TINY_CLASSES)

    with pytest.raises(SubmissionError, match=r"sub\.csv: 1 file\(s\) missing: 'c\.wav'"):
        check_submission(good.iloc[:2], sample["file_name"].tolist(), TINY_CLASSES, name="sub.csv")
    with pytest.raises(SubmissionError, match=r"1 file\(s\) not in the sample: 'd\.wav'"):
        extra = pd.concat([good, pd.DataFrame({"file_name": ["d.wav"], "target": ["go"]})])
        check_submission(extra, sample["file_name"].tolist(), TINY_CLASSES)
    with pytest.raises(SubmissionError, match=r"unknown label\(s\) 'yes'; known: \['down', 'go', 'up'\]"):
        check_submission(good.assign(target=["go", "yes", "go"]), sample["file_name"].tolist(), TINY_CLASSES)
    with pytest.raises(SubmissionError, match=r"not in the sample's order \(line 2 is 'c\.wav', expected 'a\.wav'\)"):
        check_submission(good.iloc[::-1], sample["file_name"].tolist(), TINY_CLASSES)

    path = tmp_path / "submission.csv"
    with pytest.raises(SubmissionError, match="missing"):
        write_submission(good.iloc[:2], path, sample, TINY_CLASSES)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_predict_with_test_time_shifts(tmp_path, kaggle_root, tiny_run):
    cfg = compose_train(
        tmp_path, f"data.root={kaggle_root}", f"ckpt_path={tiny_run}", "tta_shifts=[-800,0,800]",
        "save_probs=true", config_name="predict",
    )
    probabilities = pd.read_csv(predict(cfg).with_name("submission_probs.csv"))
    classifier = load_classifier(resolve_checkpoint(tiny_run, tiny_run)).eval()
    waves = torch.stack([load_clip(kaggle_root / "audio_files" / f) for f in probabilities["file_name"]])
    with torch.inference_mode():
        by_hand = sum(classifier(shift(waves, s)).softmax(-1) for s in (-800, 0, 800)) / 3
    assert torch.allclose(torch.tensor(probabilities[TINY_CLASSES].values, dtype=torch.float32), by_hand, atol=1e-5)


def test_the_tutorials_per_file_prediction_is_the_checkpoints(kaggle_root, tiny_run):
    # The baseline the benchmark times must compute what our prediction computes: the test clips are
    # exactly 1 s, so the tutorial's pad/trim and ours give the same waveform.
    files = sorted(path.name for path in (kaggle_root / "audio_files").glob("test_*.wav"))
    classifier = load_classifier(resolve_checkpoint(tiny_run, tiny_run))
    predicted = predict_per_file(classifier, [kaggle_root / "audio_files" / name for name in files])
    assert [classifier.classes[i] for i in predicted] == expected_labels(tiny_run, kaggle_root, files)
