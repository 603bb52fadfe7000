"""How the package hangs together: entry points stand side by side on shared modules, the default
trainer takes the accelerator that is there."""

import ast
import importlib
from pathlib import Path
from unittest import mock

import lightning as L
import lightning.fabric.accelerators.cuda
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

import speechcls
from conftest import compose_train
from speechcls.config import CONFIG_DIR

PACKAGE = Path(speechcls.__file__).parent


def modules() -> dict[str, Path]:
    return {
        ".".join(("speechcls", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): path
        for path in PACKAGE.rglob("*.py")
    }


def import_graph() -> dict[str, set[str]]:
    """Each speechcls module -> the speechcls modules it imports (at any depth of its code)."""
    graph = {}
    for name, path in modules().items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("speechcls"):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("speechcls")}
        graph[name] = imported
    return graph


def test_no_entry_point_imports_another():
    graph = import_graph()
    entries = {name for name, path in modules().items() if '__name__ == "__main__"' in path.read_text()}
    assert {"speechcls.train", "speechcls.predict", "speechcls.evaluate", "speechcls.detect"} <= entries
    assert {name: graph[name] & entries for name in entries if graph[name] & entries} == {}


def test_no_import_circle():
    graph = import_graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for module in graph.get(start, ()):
            if module == goal or (module not in seen and not seen.add(module) and reaches(module, goal, seen)):
                return True
        return False

    assert [name for name in graph if reaches(name, name, set())] == []


def test_the_synthesizers_live_outside_the_data_package():
    graph = import_graph()
    assert not any(name.startswith("speechcls.data.") and "synth" in name for name in graph)
    assert {"speechcls.synth.speech_set", "speechcls.synth.kokoro", "speechcls.synth.channel"} <= set(graph)
    # Loading data never needs the synthesizers.
    assert not any(module.startswith("speechcls.synth") for name in graph if name.startswith("speechcls.data") for module in graph[name])


def test_the_default_trainer_uses_a_gpu_where_there_is_one(tmp_path):
    cfg = compose_train(tmp_path)
    assert isinstance(instantiate(cfg.trainer, logger=False).accelerator, CPUAccelerator)  # this machine
    with (
        mock.patch("torch.cuda.is_available", return_value=True),
        mock.patch("torch.cuda.device_count", return_value=1),
        mock.patch.object(lightning.fabric.accelerators.cuda, "num_cuda_devices", return_value=1),
    ):
        trainer: L.Trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.accelerator, CUDAAccelerator)


def test_every_config_target_names_a_class_or_function_that_exists():
    # A moved module must take its configs along (they name it by its import path).
    targets = {
        line.split("_target_:")[1].strip()
        for path in Path(CONFIG_DIR).rglob("*.yaml")
        for line in path.read_text().splitlines()
        if "_target_: speechcls." in line
    }
    assert "speechcls.detector.Detector" in targets
    missing = []
    for target in sorted(targets):
        module, _, name = target.rpartition(".")
        if not hasattr(importlib.import_module(module), name):
            missing.append(target)
    assert missing == []
