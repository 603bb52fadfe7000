import io
import json
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import DEFAULT_SIZE_GUIDANCE, EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from conftest import TINY_CLASSES, compose_train
from speechcls.callbacks import WorstMistakes
from speechcls.callbacks.tensorboard import due
from speechcls.module import build_module
from speechcls.train import train

# The tiny fixture's validation split: 6 clips, 2 of each of the 3 classes, in one batch of 8.
EXAMPLES = 4


@pytest.fixture(scope="module")
def events(tmp_path_factory, kaggle_root):
    """Everything a 2-epoch run wrote to TensorBoard (one training batch an epoch), and its metrics.json."""
    tmp_path = tmp_path_factory.mktemp("tensorboard")
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer.max_epochs=2", "+trainer.limit_train_batches=1",
        "optimizer=adam", "optimizer.lr=1e-3", "scheduler=steplr", "callbacks.last_checkpoint=null",
        f"callbacks.val_examples.num_examples={EXAMPLES}", "callbacks.worst_mistakes.num_mistakes=2",
    )
    train(cfg)
    every_event = dict.fromkeys(DEFAULT_SIZE_GUIDANCE, 0)
    accumulator = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance=every_event)
    accumulator.Reload()
    return accumulator, json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]


def image_sizes(accumulator, tag):
    """(step, width, height) of each image of `tag`, checked against the PNG it holds."""
    sizes = []
    for event in accumulator.Images(tag):
        assert Image.open(io.BytesIO(event.encoded_image_string)).size == (event.width, event.height)
        sizes.append((event.step, event.width, event.height))
    return sizes


def test_scalars_include_throughput_epoch_time_and_learning_rate(events):
    accumulator, _ = events
    scalars = set(accumulator.Tags()["scalars"])
    for tag in ["train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "lr-Adam", "time/epoch_s",
                "time/train_clips_per_s"]:
        assert tag in scalars, tag
    assert all(event.value > 0 for event in accumulator.Scalars("time/train_clips_per_s"))
    assert len(accumulator.Scalars("time/epoch_s")) == 2


def test_due_validation_epochs_have_confusion_matrix_and_per_class_accuracy_beside_their_scalars(events):
    accumulator, _ = events
    # Epochs 0 and the last (here every epoch) are due with the default every_n_epochs=5.
    val_steps = [event.step for event in accumulator.Scalars("val/acc")]
    for tag in ["val/confusion_matrix", "val/per_class_accuracy"]:
        sizes = image_sizes(accumulator, tag)
        assert [step for step, _, _ in sizes] == val_steps
        assert all(width > 300 and height > 150 for _, width, height in sizes)


def test_fixed_validation_examples_are_logged_as_spectrograms_and_audio_once(events):
    accumulator, _ = events
    val_steps = [event.step for event in accumulator.Scalars("val/acc")]
    # Epochs 0 and the last are due with the default every_n_epochs=5.
    assert [step for step, _, _ in image_sizes(accumulator, "val_examples/spectrograms")] == val_steps
    audio_tags = sorted(tag for tag in accumulator.Tags()["audio"] if tag.startswith("val_examples/"))
    assert len(audio_tags) == EXAMPLES
    assert {tag.split("_")[-1] for tag in audio_tags} <= set(TINY_CLASSES)
    for tag in audio_tags:
        (clip,) = accumulator.Audio(tag)  # the same clip every epoch: its sound is logged once
        assert clip.sample_rate == 16000 and clip.length_frames == 16000 and clip.content_type == "audio/wav"


def test_worst_mistakes_are_logged_each_due_epoch(events):
    accumulator, _ = events
    # A barely trained net on 3 balanced classes gets at least 2 of the 6 clips wrong.
    assert len(image_sizes(accumulator, "val_mistakes/spectrograms")) == 2
    for rank in range(2):
        clips = accumulator.Audio(f"val_mistakes/audio/{rank}")
        assert [clip.sample_rate for clip in clips] == [16000, 16000]


def test_training_batch_is_logged_once(events):
    accumulator, _ = events
    ((step, width, height),) = image_sizes(accumulator, "train/batch_spectrograms")
    assert step == 0 and width > 0 and height > 0


def test_model_graph_is_off_by_default_and_traced_on_request(tmp_path):
    assert compose_train(tmp_path).logger.tensorboard.log_graph is False
    cfg = compose_train(tmp_path, "logger.tensorboard.log_graph=true")
    logger = instantiate(cfg.logger.tensorboard)
    # Lightning calls this at the start of fitting (and testing); one trace is enough here.
    logger.log_graph(build_module(cfg, TINY_CLASSES))
    logger.finalize("success")
    accumulator = EventAccumulator(logger.log_dir)
    accumulator.Reload()
    assert accumulator.Tags()["graph"]


def test_hparams_tab_holds_the_config_and_final_metrics(events):
    accumulator, metrics = events
    content = accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["optimizer/lr"].number_value == pytest.approx(1e-3)
    assert hparams["data/batch_size"].number_value == 8
    assert hparams["model/arch"].string_value == "resnet18"
    assert not [name for name in hparams if name.startswith(("paths/", "callbacks/", "logger/"))]
    content = accumulator.SummaryMetadata("_hparams_/experiment").plugin_data.content
    metric_tags = {info.name.tag for info in HParamsPluginData.FromString(content).experiment.metric_infos}
    assert {"final/val/acc", "final/best/val/acc", "final/test/acc"} <= metric_tags
    (final,) = accumulator.Scalars("final/val/acc")
    assert final.value == pytest.approx(metrics["val/acc"])


# Lightning's LearningRateMonitor refuses a run without any logger.
@pytest.mark.parametrize("loggers", [["logger=csv"], ["logger.tensorboard=null", "callbacks.lr_monitor=null"]])
def test_without_tensorboard_the_callbacks_do_nothing_and_throughput_still_logs(tmp_path, kaggle_root, loggers):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
        "test=false", "callbacks.model_checkpoint=null", "callbacks.last_checkpoint=null", *loggers,
    )
    train(cfg)
    run = tmp_path / "run"
    assert not list(run.rglob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["time/train_clips_per_s"] > 0 and metrics["time/epoch_s"] > 0


def test_worst_mistakes_keeps_the_most_confident_wrong_predictions():
    callback = WorstMistakes(num_mistakes=2)
    callback.mistakes = []
    waves = torch.arange(4.0)[:, None].expand(4, 3)  # clip i is filled with i
    # Clip 0 is right; clips 1-3 are wrong with confidence 0.6, 0.9 and 0.7.
    logits = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.1, 0.9], [0.7, 0.3]]).log()
    callback.keep(waves[:2], logits[:2], torch.tensor([0, 0]))
    callback.keep(waves[2:], logits[2:], torch.tensor([0, 1]))
    assert [(round(confidence, 2), int(wave[0]), target) for confidence, wave, target, _ in callback.mistakes] == [
        (0.9, 2, 0),
        (0.7, 3, 1),
    ]


def test_images_are_due_on_epoch_zero_every_n_and_the_last():
    def due_epochs(every_n_epochs, max_epochs):
        return [
            epoch
            for epoch in range(max_epochs)
            if due(SimpleNamespace(current_epoch=epoch, max_epochs=max_epochs, sanity_checking=False), every_n_epochs)
        ]

    assert due_epochs(5, 12) == [0, 5, 10, 11]
    assert due_epochs(1, 3) == [0, 1, 2]
    assert not due(SimpleNamespace(current_epoch=0, max_epochs=3, sanity_checking=True), 1)
