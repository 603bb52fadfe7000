"""Lightning callbacks, one concern each: CPU tuning, and what shows a run in TensorBoard.

Throughput logs scalars through `pl_module.log`, to every logger. The others write images and audio
through the TensorBoard logger's SummaryWriter and do nothing when the run has no TensorBoard logger
(CSV only, or none).
"""

from speechcls.callbacks.confusion import ConfusionMatrix
from speechcls.callbacks.cpu_tuning import CPUTuning
from speechcls.callbacks.examples import ValidationExamples, WorstMistakes
from speechcls.callbacks.throughput import Throughput
from speechcls.callbacks.training_batch import TrainingBatch

__all__ = ["CPUTuning", "ConfusionMatrix", "Throughput", "TrainingBatch", "ValidationExamples", "WorstMistakes"]
