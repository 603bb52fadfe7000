import math
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY_CLASSES, compose_train
from speechcls.schedules import warmup_cosine
from speechcls.train import build_module, train

TINY_NET = ["model=bc_resnet", "model.width=1"]


def configured(tmp_path, *overrides, total_steps: int = 20):
    """configure_optimizers of the composed module, as a trainer estimating `total_steps` would call it."""
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", *TINY_NET, *overrides)
    module = build_module(cfg, TINY_CLASSES)
    module.trainer = SimpleNamespace(estimated_stepping_batches=total_steps)
    return cfg, module.configure_optimizers()


def lrs_over(optimizer, scheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize(
    ("name", "kind", "settings"),
    [
        ("adam", torch.optim.Adam, {"lr": 1e-4, "betas": (0.9, 0.99), "eps": 1e-6, "weight_decay": 5e-4}),
        ("adamw", torch.optim.AdamW, {"lr": 3e-3, "weight_decay": 0.01}),
        ("sgd", torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
    ],
)
def test_optimizer_config_builds_and_steps(tmp_path, name, kind, settings):
    _, optimizer = configured(tmp_path, f"optimizer={name}", "scheduler=none")
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert {key: group[key] for key in settings} == settings
    weight = group["params"][0]
    before = weight.detach().clone()
    weight.grad = torch.ones_like(weight)
    optimizer.step()
    assert not torch.equal(weight, before)


def test_steplr_and_multistep_step_per_epoch_at_their_milestones(tmp_path):
    _, steplr = configured(tmp_path, "scheduler=steplr", "optimizer.lr=1.0")
    assert steplr["lr_scheduler"]["interval"] == "epoch"
    lrs = lrs_over(steplr["optimizer"], steplr["lr_scheduler"]["scheduler"], 21)
    assert lrs[19] == 1.0 and lrs[20] == pytest.approx(0.1)
    _, multistep = configured(tmp_path, "scheduler=multistep", "optimizer.lr=1.0")
    assert multistep["lr_scheduler"]["interval"] == "epoch"
    lrs = lrs_over(multistep["optimizer"], multistep["lr_scheduler"]["scheduler"], 26)
    assert (lrs[14], lrs[15], lrs[25]) == pytest.approx((1.0, 0.1, 0.01))


def test_cosine_warms_up_then_decays_to_zero_over_the_trainers_steps(tmp_path):
    _, config = configured(
        tmp_path, "scheduler=cosine", "scheduler.scheduler.warmup_fraction=0.1", "optimizer.lr=1e-3", total_steps=100
    )
    assert config["lr_scheduler"]["interval"] == "step"
    lrs = lrs_over(config["optimizer"], config["lr_scheduler"]["scheduler"], 101)
    peak = max(lrs)
    assert peak == pytest.approx(1e-3) and lrs.index(peak) == 10
    assert lrs[:10] == sorted(lrs[:10]) and lrs[10:] == sorted(lrs[10:], reverse=True)
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)


def test_warmup_cosine_ends_at_its_final_fraction():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    scheduler = warmup_cosine(optimizer, total_steps=10, warmup_fraction=0.2, final_lr_fraction=0.1)
    lrs = lrs_over(optimizer, scheduler, 12)
    assert lrs[:4] == pytest.approx([2 / 3, 4 / 3, 2.0, 2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 8)))])
    assert lrs[10:] == pytest.approx([0.2, 0.2])


def test_onecycle_peaks_at_the_optimizer_lr_and_lasts_the_trainers_steps(tmp_path):
    cfg, config = configured(tmp_path, "scheduler=onecycle", "optimizer=sgd", "optimizer.lr=0.2", total_steps=50)
    assert config["lr_scheduler"]["interval"] == "step" and cfg.scheduler.scheduler.max_lr == 0.2
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = lrs_over(optimizer, scheduler, 50)
    assert max(lrs) == pytest.approx(0.2) and lrs[-1] < 0.2 / 1000
    with pytest.raises(ValueError, match="Tried to step 51 times. The specified number of total steps is 50"):
        lrs_over(optimizer, scheduler, 1)


def test_no_scheduler_gives_the_bare_optimizer(tmp_path):
    _, config = configured(tmp_path, "optimizer=sgd", "scheduler=none")
    assert type(config) is torch.optim.SGD


def test_per_step_schedule_is_stepped_every_batch_in_training(tmp_path, kaggle_root):
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", *TINY_NET, "scheduler=cosine", "trainer.max_epochs=1",
        "trainer.gradient_clip_val=1.0", "test=false",
    )  # fmt: skip
    train(cfg)
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    steps = math.ceil(24 / 8)  # the fixture's 24 training clips in batches of 8; stepped per epoch it would be 1
    assert last["lr_schedulers"][0]["last_epoch"] == steps
    assert last["lr_schedulers"][0]["_last_lr"] == [pytest.approx(0.0, abs=1e-12)]
