import json

import pandas as pd
import pytest
import torch

from conftest import TINY_CLASSES, compose_train
from speechcls.audio import load_clip
from speechcls.checkpoints import resolve_checkpoint
from speechcls.data.tables import TableError
from speechcls.evaluate import evaluate, warn_if_split_differs
from speechcls.inference import load_classifier
from speechcls.submission import SubmissionError

REPORTS = [
    "classification_report.csv", "confusion_matrix.csv", "confusion_matrix.png", "metrics.json", "misclassified.csv"
]


def compose_evaluate(tmp_path, *overrides):
    return compose_train(tmp_path, *overrides, config_name="evaluate")


def test_checkpoint_on_a_labels_csv_with_a_subset_of_its_classes(tmp_path, kaggle_root, tiny_run):
    answers = pd.read_csv(kaggle_root / "test_labels.csv")
    answers = answers[answers["target"] != "down"]  # the checkpoint knows down, go, up
    answers.to_csv(tmp_path / "labels.csv", index=False)
    cfg = compose_evaluate(
        tmp_path, f"data.root={kaggle_root}", f"ckpt_path={tiny_run}", f"data.test_csv={tmp_path / 'labels.csv'}"
    )

    metrics = evaluate(cfg)

    reports = tmp_path / "run"
    assert sorted(p.name for p in reports.iterdir()) == REPORTS
    classifier = load_classifier(resolve_checkpoint(tiny_run, tiny_run)).eval()
    waves = torch.stack([load_clip(kaggle_root / "audio_files" / name) for name in answers["file_name"]])
    with torch.inference_mode():
        confidence, index = classifier(waves).softmax(-1).max(dim=1)
    predicted = [TINY_CLASSES[i] for i in index.tolist()]
    right = [p == t for p, t in zip(predicted, answers["target"])]
    assert metrics["accuracy"] == pytest.approx(sum(right) / len(right))
    assert json.loads((reports / "metrics.json").read_text())["metrics"]["clips"] == len(answers)
    matrix = pd.read_csv(reports / "confusion_matrix.csv", index_col="true")
    assert matrix.index.tolist() == TINY_CLASSES and matrix.columns.tolist() == TINY_CLASSES
    assert matrix.loc["down"].sum() == 0 and matrix.values.sum() == len(answers)
    report = pd.read_csv(reports / "classification_report.csv")
    assert report["class"].tolist() == TINY_CLASSES and report["support"].tolist() == [0, 2, 1]
    wrong = pd.read_csv(reports / "misclassified.csv")
    assert wrong["confidence"].is_monotonic_decreasing
    expected = answers.assign(predicted=predicted, confidence=confidence.numpy())[[not r for r in right]]
    wrong, expected = wrong.sort_values("file_name"), expected.sort_values("file_name")
    columns = ["file_name", "target", "predicted"]
    assert wrong[columns].values.tolist() == expected[columns].values.tolist()
    assert wrong["confidence"].tolist() == pytest.approx(expected["confidence"].tolist(), abs=1e-3)
    assert list(wrong.columns) == ["file_name", "target", "predicted", "confidence"]


def test_checkpoint_on_the_validation_split(tmp_path, kaggle_root, tiny_run):
    cfg = compose_evaluate(tmp_path, "data=kaggle", f"data.root={kaggle_root}", f"ckpt_path={tiny_run}")
    metrics = evaluate(cfg)
    # 20 % of the 30 training clips, stratified: two of each class.
    assert metrics["clips"] == 6
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_data"] == "checkpoint on the validation split (no data.test_csv)"


def test_an_ensemble_says_so_in_its_reports(tmp_path, kaggle_root, tiny_run):
    cfg = compose_evaluate(tmp_path, "data=kaggle", f"data.root={kaggle_root}", f"ckpt_path=[{tiny_run},{tiny_run}]")
    evaluate(cfg)
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["test_data"] == "ensemble of 2 checkpoints on the validation split (no data.test_csv)"


def test_unknown_label_in_the_labels_csv_is_named(tmp_path, kaggle_root, tiny_run):
    labels = pd.DataFrame({"file_name": ["test_0.wav", "test_1.wav"], "target": ["go", "yes"]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    cfg = compose_evaluate(
        tmp_path, f"data.root={kaggle_root}", f"ckpt_path={tiny_run}", f"data.test_csv={tmp_path / 'labels.csv'}"
    )
    with pytest.raises(TableError, match=r"\['yes'\].*not among the model's 3 classes"):
        evaluate(cfg)


def test_scoring_a_submission_matches_a_hand_computation(tmp_path, kaggle_root):
    # Answers: down go up down go. Predicted: down go down down up -> 3 of 5 right.
    answers = pd.read_csv(kaggle_root / "test_labels.csv")
    assert answers["target"].tolist() == ["down", "go", "up", "down", "go"]
    submission = answers.assign(target=["down", "go", "down", "down", "up"]).iloc[::-1]  # order free here
    submission.to_csv(tmp_path / "submission.csv", index=False)
    # The built-in sets' test CSV (data=synthetic, the default) holds the answers.
    cfg = compose_evaluate(tmp_path, f"data.root={kaggle_root}", f"submission={tmp_path / 'submission.csv'}")

    metrics = evaluate(cfg)

    assert metrics["accuracy"] == pytest.approx(3 / 5)
    # F1 per class: down P=2/3 R=1 -> 0.8; go P=1 R=1/2 -> 2/3; up P=0 R=0 -> 0.
    assert metrics["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    matrix = pd.read_csv(tmp_path / "run" / "confusion_matrix.csv", index_col="true")
    assert matrix.values.tolist() == [[2, 0, 0], [0, 1, 1], [1, 0, 0]]
    wrong = pd.read_csv(tmp_path / "run" / "misclassified.csv")
    assert wrong.to_dict("records") == [
        {"file_name": "test_2.wav", "target": "up", "predicted": "down"},
        {"file_name": "test_4.wav", "target": "go", "predicted": "up"},
    ]


@pytest.mark.parametrize(
    ("rows", "targets", "message"),
    [
        (slice(0, 4), None, r"1 file\(s\) missing: 'test_4\.wav'"),
        (slice(None), ["down", "go", "up", "down", "yes"], r"unknown label\(s\) 'yes'"),
    ],
)
def test_a_bad_submission_is_rejected(tmp_path, kaggle_root, rows, targets, message):
    submission = pd.read_csv(kaggle_root / "test_labels.csv").iloc[rows]
    if targets:
        submission = submission.assign(target=targets)
    submission.to_csv(tmp_path / "submission.csv", index=False)
    cfg = compose_evaluate(
        tmp_path, f"data.root={kaggle_root}", f"submission={tmp_path / 'submission.csv'}", "data.test_csv=test_labels.csv"
    )
    with pytest.raises(SubmissionError, match=message):
        evaluate(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("data", ["kaggle", "speechcommands"])  # speechcommands has no data.test_csv key
def test_scoring_a_submission_without_answers_says_what_is_missing(tmp_path, kaggle_root, data):
    pd.read_csv(kaggle_root / "test_labels.csv").to_csv(tmp_path / "submission.csv", index=False)
    cfg = compose_evaluate(tmp_path, f"data={data}", f"data.root={kaggle_root}", f"submission={tmp_path / 'submission.csv'}")
    with pytest.raises(ValueError, match=r"needs the answers: data\.test_csv="):
        evaluate(cfg)


def test_a_validation_split_unlike_the_training_runs_warns(tmp_path, kaggle_root):
    run = tmp_path / "train_run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 7\ndata:\n  seed: ${seed}\n  val_fraction: 0.2\n")
    cfg = compose_evaluate(tmp_path, f"data.root={kaggle_root}")
    with pytest.warns(UserWarning, match=r"data\.seed=42 but the checkpoint's run was trained with 7"):
        warn_if_split_differs(cfg, run / "checkpoints" / "best.ckpt")
