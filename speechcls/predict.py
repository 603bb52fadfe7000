"""A Kaggle submission from a checkpoint: `python -m speechcls.predict ckpt_path=... data.root=...`.

Clips go through the validation data path (deterministic pad/trim, log-mels on the device) in
batches under `torch.inference_mode()` (Lightning's predict loop); the class list is the checkpoint's.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from speechcls.checkpoints import resolve_checkpoints
from speechcls.config import CONFIG_DIR
from speechcls.data.tables import FILE_COLUMN, TARGET_COLUMN
from speechcls.inference import ensemble_probabilities, load_ensemble, make_trainer, probability_table
from speechcls.submission import write_csv_atomically, write_submission


def predict(cfg: DictConfig) -> Path:
    """Write the submission (and optionally the probabilities); returns the submission's path."""
    members = load_ensemble(resolve_checkpoints(cfg.ckpt_path, cfg.runs_dir), cfg.channels_last)
    classes = members[0].classes
    # No prepare_data: prediction reads a folder, it never generates one (data.root may be Kaggle's).
    datamodule = instantiate(cfg.data, classes=classes)
    probabilities = ensemble_probabilities(members, datamodule.predict_dataloader(), make_trainer(cfg), cfg.tta_shifts)
    # The rows the data module predicts (Kaggle: every row of sample_submission.csv, in its order, or a
    # clear error; Speech Commands: the official test list): the submission must answer each once.
    sample = datamodule.predict_table()
    files = sample[FILE_COLUMN]
    predicted = [classes[i] for i in probabilities.argmax(dim=1).tolist()]
    output = write_submission(pd.DataFrame({FILE_COLUMN: files, TARGET_COLUMN: predicted}), cfg.output, sample, classes)
    print(f"submission: {output} ({len(files)} clips, {len(classes)} classes)")
    if cfg.save_probs:
        table = probability_table(probabilities, classes, files)
        print(f"probabilities: {write_csv_atomically(table, output.with_name(f'{output.stem}_probs.csv'))}")
    return output


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
