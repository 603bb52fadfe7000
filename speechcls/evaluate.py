"""Score a checkpoint or a submission against labels: `python -m speechcls.evaluate [overrides]`.

`ckpt_path=...` runs the model on `data.test_csv` (the built-in sets' held-out voices; any labelled
file_name,target CSV, absolute or in data.root), or on the validation split where that is null;
`submission=<csv>` scores a submission against `data.test_csv` without a model. Writes into the run
directory: metrics.json, classification_report.csv (per class), confusion_matrix.csv (counts; rows: true,
columns: predicted) and its row-normalised figure confusion_matrix.png, and misclassified.csv (most
confident mistakes first). Labels with engine, voice or channel columns (the built-in sets'
test_labels.csv) add accuracy_by_condition.csv and those accuracies in metrics.json.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import hydra
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from speechcls.callbacks.figures import confusion_figure
from speechcls.checkpoints import resolve_checkpoints
from speechcls.config import CONFIG_DIR
from speechcls.data.conditions import (
    CONFIDENCE_COLUMN,
    PREDICTED_COLUMN,
    accuracy_by_condition,
    results_of_test_split,
    with_conditions,
)
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN, read_table
from speechcls.inference import ensemble_probabilities, load_ensemble, make_trainer
from speechcls.run_record import write_record
from speechcls.submission import check_submission


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Write the reports into `paths.output_dir`, print the headline figures and return them."""
    if cfg.submission:
        results, classes = score_submission(cfg)
        source = f"submission {cfg.submission}"
    else:
        results, classes, source = run_model(cfg)
    return write_reports(results, classes, Path(cfg.paths.output_dir), source)


def run_model(cfg: DictConfig) -> tuple[pd.DataFrame, list[str], str]:
    """Predictions of the checkpoint (or the ensemble's mean) on the data module's test split, with their
    confidence, the checkpoint's classes and what was tested on what, for the reports."""
    checkpoints = resolve_checkpoints(cfg.ckpt_path, cfg.runs_dir)
    members = load_ensemble(checkpoints, cfg.channels_last)
    classes = members[0].classes
    # Labels are indexed by the checkpoint's classes: an unknown label is an error naming it.
    datamodule = instantiate(cfg.data, classes=classes)
    split = datamodule.test_split()
    if split is None:
        raise ValueError("nothing to evaluate on: no data.test_csv, and data.val_fraction=0 left no validation split")
    if split.is_validation:
        for checkpoint in checkpoints:
            warn_if_split_differs(cfg, checkpoint)
    probabilities = ensemble_probabilities(members, datamodule.test_dataloader(), make_trainer(cfg), cfg.tta_shifts)
    model = "checkpoint" if len(members) == 1 else f"ensemble of {len(members)} checkpoints"
    return results_of_test_split(datamodule, probabilities), classes, f"{model} on {split.name}"


def score_submission(cfg: DictConfig) -> tuple[pd.DataFrame, list[str]]:
    """The submission's labels beside the answers, and the answers' classes (its labels must be among them)."""
    if not cfg.data.get("test_csv"):
        raise ValueError("scoring a submission needs the answers: data.test_csv=<file_name,target CSV>")
    answers = read_table(Path(cfg.data.root) / cfg.data.test_csv)
    submission = read_table(cfg.submission)
    classes = sorted(set(answers[TARGET_COLUMN]))
    check_submission(submission, answers[FILE_COLUMN].tolist(), classes, ordered=False, name=cfg.submission)
    predicted = submission.set_index(FILE_COLUMN)[TARGET_COLUMN]
    results = answers[[FILE_COLUMN, TARGET_COLUMN]].assign(**{PREDICTED_COLUMN: predicted[answers[FILE_COLUMN]].values})
    return with_conditions(results, answers), classes


def write_reports(results: pd.DataFrame, classes: Sequence[str], output_dir: Path, source: str) -> dict[str, float]:
    """All report files for `results` (file_name, target, predicted[, confidence]) over `classes`."""
    output_dir.mkdir(parents=True, exist_ok=True)
    true, predicted = results[TARGET_COLUMN], results[PREDICTED_COLUMN]
    wrong = results[true != predicted]
    metrics = {
        "accuracy": float((true == predicted).mean()),
        # Over the classes that occur among the labels or the predictions (scikit-learn's default).
        "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)),
        "clips": len(results),
        "misclassified": len(wrong),
    }
    by_condition = accuracy_by_condition(results)
    for condition, value, accuracy in by_condition[["condition", "value", "accuracy"]].itertuples(index=False):
        metrics[f"accuracy/{condition}/{value}"] = float(accuracy)
    write_record(output_dir, {"status": "ok", "metrics": metrics, "test_data": source})
    precision, recall, f1, support = precision_recall_fscore_support(true, predicted, labels=classes, zero_division=0)
    pd.DataFrame(
        {"class": classes, "precision": precision, "recall": recall, "f1": f1, "support": support}
    ).to_csv(output_dir / "classification_report.csv", index=False, float_format="%.4f")
    matrix = confusion_matrix(true, predicted, labels=classes)
    table = pd.DataFrame(matrix, index=pd.Index(classes, name="true"), columns=classes)
    table.to_csv(output_dir / "confusion_matrix.csv")
    # The figure as TensorBoard shows it: each row as fractions of its true class.
    shares = confusion_matrix(true, predicted, labels=classes, normalize="true")
    confusion_figure(shares, classes).savefig(output_dir / "confusion_matrix.png", dpi=150)
    if CONFIDENCE_COLUMN in wrong:
        wrong = wrong.sort_values(CONFIDENCE_COLUMN, ascending=False, kind="stable")
    wrong.to_csv(output_dir / "misclassified.csv", index=False, float_format="%.4f")
    lines = [
        "",
        f"evaluation of the {source}",
        f"{'accuracy':>14}: {metrics['accuracy']:.4f}",
        f"{'macro-F1':>14}: {metrics['macro_f1']:.4f}",
        f"{'clips':>14}: {metrics['clips']}",
        f"{'misclassified':>14}: {metrics['misclassified']}",
    ]
    if len(by_condition):
        by_condition.to_csv(output_dir / "accuracy_by_condition.csv", index=False, float_format="%.4f")
        lines += condition_lines(by_condition)
    print("\n".join([*lines, f"{'reports':>14}: {output_dir}"]))
    return metrics


def condition_lines(by_condition: pd.DataFrame, most: int = 12) -> list[str]:
    """Accuracy per value of each condition, for the console; conditions with more values than `most`
    (the espeak voices) only in accuracy_by_condition.csv."""
    lines = []
    for condition, rows in by_condition.groupby("condition", sort=False):
        if len(rows) > most:
            lines.append(f"{condition:>14}: {len(rows)} values, see accuracy_by_condition.csv")
            continue
        lines.append(f"{condition:>14}:")
        lines += [f"{value:>22}: {accuracy:.4f} ({clips} clips)" for value, clips, accuracy in rows[["value", "clips", "accuracy"]].itertuples(index=False)]
    return lines


def warn_if_split_differs(cfg: DictConfig, checkpoint: Path) -> None:
    """Validation figures mean something only if the split is drawn as in training: compare with the
    training run's saved config, where there is one."""
    saved = checkpoint.parent.parent / ".hydra" / "config.yaml"
    if not saved.is_file():
        return
    trained = OmegaConf.load(saved).data
    for key in ("seed", "val_fraction", "folds", "fold"):
        if key in trained and trained[key] != cfg.data.get(key):  # runs before data.folds lack it
            warnings.warn(
                f"data.{key}={cfg.data[key]} but the checkpoint's run was trained with {trained[key]}: "
                f"the validation split may contain training clips (pass seed=... as in training)",
                stacklevel=2,
            )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
