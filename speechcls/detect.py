"""Keyword spotting on audio of any length: `python -m speechcls.detect ckpt_path=... input=FILE_OR_FOLDER`.

The clip classifier slides over the audio: a window of the clip length every `hop` samples (the last
one reaching past the end, zero-filled; a file shorter than a window is one window placed as
prediction places a short clip), in batches. Each keyword's probability is averaged over the last
`smooth_seconds` of windows; a detection fires where a keyword's smoothed probability reaches `threshold`
(one for all, or one per keyword), unless another one fired less than `refractory_seconds` before.
`_unknown_` and `_silence_` never fire. Files are decoded in blocks (`speechcls.audio.read_audio_blocks`), so memory
stays bounded however long they are. Writes one CSV row per detection: file, start, end, word, score
(the window's times in seconds, clipped to the file; the smoothed probability).

The model is a checkpoint, or an exported model: `ckpt_path=<model.onnx>` (labels.txt beside it).
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
import soundfile as sf
from hydra.utils import instantiate
from omegaconf import DictConfig
from tqdm import tqdm

from speechcls.audio import read_audio_blocks
from speechcls.config import CONFIG_DIR
from speechcls.detector import PROGRESS, Detector
from speechcls.inference import load_model, model_file
from speechcls.submission import write_csv_atomically
from speechcls.thresholds import chosen_threshold, describe

DETECTION_COLUMNS = ["file", "start", "end", "word", "score"]
def audio_files(input: str | Path) -> list[Path]:
    """`input` if it is a file, else every file under the folder that libsndfile reads, sorted."""
    path = Path(input)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input {input}: no such file or folder")
    extensions = {f".{name.lower()}" for name in sf.available_formats()} | {".oga", ".opus"}
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise FileNotFoundError(f"input {input}: no audio files in the folder")
    return files


def detect(cfg: DictConfig) -> Path:
    """Write the detections of every input file to `cfg.output`; returns its path."""
    path = model_file(cfg.ckpt_path, cfg.runs_dir)
    model, classes = load_model(path, cfg.channels_last)
    threshold, source = chosen_threshold(cfg.detector.threshold, path)
    print(f"threshold {describe(threshold)}: {source}")
    detector: Detector = instantiate(cfg.detector, model=model, classes=classes, threshold=threshold)
    files = audio_files(cfg.input)
    seconds = sum(sf.info(str(path)).duration for path in files)
    tables = []
    with tqdm(total=seconds, unit="s", desc="detecting", bar_format=PROGRESS) as bar:
        for path in files:
            blocks = read_audio_blocks(path, cfg.block_seconds, detector.sample_rate)
            posteriors = detector.posteriors(blocks, lambda samples: bar.update(samples / detector.sample_rate))
            tables.append(detector.detections(posteriors).assign(file=str(path))[DETECTION_COLUMNS])
    table = pd.concat(tables, ignore_index=True)
    output = write_csv_atomically(table.round({"start": 3, "end": 3, "score": 4}), Path(cfg.output))
    print(f"detections: {output} ({len(table)} in {len(files)} file(s), {seconds / 3600:.2f} h of audio)")
    return output


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="detect")
def main(cfg: DictConfig) -> None:
    detect(cfg)


if __name__ == "__main__":
    main()
