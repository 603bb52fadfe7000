import json

import torch

from conftest import compose_train
from speechcls.train import train
from test_resume import lean_overrides


def deterministic_run(tmp_path, kaggle_root):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", "data.cache=false", "trainer.max_epochs=1",
        "trainer.deterministic=true", "test=false", "seed=3", *lean_overrides(tmp_path),
    )  # fmt: skip
    train(cfg)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    weights = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    # Throughput figures are wall-clock measurements, the rest must repeat exactly.
    return {name: value for name, value in metrics.items() if not name.startswith("time/")}, weights


def test_two_deterministic_runs_with_one_seed_give_identical_metrics_and_weights(tmp_path, kaggle_root):
    metrics, weights = deterministic_run(tmp_path / "a", kaggle_root)
    again, weights_again = deterministic_run(tmp_path / "b", kaggle_root)
    assert metrics == again and "val/acc" in metrics
    assert all(torch.equal(weights[name], weights_again[name]) for name in weights)
