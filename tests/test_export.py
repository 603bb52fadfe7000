import lightning as L
import pytest
import torch

from conftest import compose_train
from speechcls.export import export
from speechcls.inference import load_exported
from speechcls.module import SpeechClassifier
from speechcls.module import build_module


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained model's checkpoint: export must reproduce whatever weights it holds."""
    tmp_path = tmp_path_factory.mktemp("export")
    module = build_module(compose_train(tmp_path, "data=kaggle", "data.root=unused"), ["down", "go", "up"])
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_progress_bar=False)
    trainer.strategy.connect(module)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_exported_model_matches_the_checkpoint(tmp_path, checkpoint, format):
    path = export(checkpoint, tmp_path, format)
    assert (tmp_path / "labels.txt").read_text().split() == ["down", "go", "up"]
    module = SpeechClassifier.load_from_checkpoint(checkpoint, weights_only=True).eval()
    wave = torch.randn(5, 16000)  # another batch size than the export example
    with torch.inference_mode():
        expected = module(wave)
    torch.testing.assert_close(load_exported(path)(wave), expected, atol=1e-3, rtol=1e-3)


def test_unknown_format_is_rejected(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="format must be one of"):
        export(checkpoint, tmp_path, "tflite")
