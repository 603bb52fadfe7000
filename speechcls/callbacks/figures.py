"""Matplotlib figures for TensorBoard images, drawn without pyplot (no global figure registry)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure


def confusion_figure(matrix: np.ndarray, classes: Sequence[str]) -> Figure:
    """A row-normalized confusion matrix (rows: true class) with every class labelled.

    Cells of at least 5 % show their percentage; smaller ones would only add noise at 35 classes.
    """
    size = 2.5 + 0.25 * len(classes)
    figure = Figure(figsize=(size + 1.5, size), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, classes, rotation=90, fontsize=8)
    axes.set_yticks(ticks, classes, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for true, predicted in zip(*np.nonzero(matrix >= 0.05)):
        value = matrix[true, predicted]
        axes.text(predicted, true, f"{100 * value:.0f}", ha="center", va="center", fontsize=6,
                  color="white" if value > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.04)
    return figure


def accuracy_bars(accuracy: np.ndarray, classes: Sequence[str]) -> Figure:
    """Per-class accuracy as horizontal bars in class order, so epochs compare with the step slider."""
    figure = Figure(figsize=(6, 1.0 + 0.22 * len(classes)), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(classes))
    axes.barh(positions, accuracy, color="tab:blue")
    axes.set_yticks(positions, classes, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("accuracy (recall of the true class)")
    for position, value in zip(positions, accuracy):
        axes.text(min(value, 0.88) + 0.01, position, f"{value:.2f}", va="center", fontsize=7)
    return figure


def spectrogram_grid(spectrograms: torch.Tensor, titles: Sequence[str], wrong: Sequence[bool] | None = None,
                     columns: int = 4) -> Figure:
    """Log-mel images of a batch (clips, 1, n_mels, frames), low frequencies at the bottom; titles of
    `wrong` ones in red."""
    spectrograms = spectrograms[:, 0].float().cpu().numpy()
    rows = math.ceil(len(spectrograms) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows), dpi=100, layout="constrained")
    wrong = wrong if wrong is not None else [False] * len(spectrograms)
    for index, (spectrogram, title, is_wrong) in enumerate(zip(spectrograms, titles, wrong)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma")
        axes.set_title(title, fontsize=9, color="tab:red" if is_wrong else "black")
        axes.set_xlabel("frame", fontsize=7)
        axes.set_ylabel("mel bin", fontsize=7)
        axes.tick_params(labelsize=6)
    return figure
