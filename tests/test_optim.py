import math
from types import SimpleNamespace

import pytest
import torch
from torch.optim.lr_scheduler import SequentialLR, StepLR

from conftest import TINY_CLASSES, compose_train
from speechcls.schedules import warmup_cosine
from speechcls.module import build_module
from speechcls.train import train

TINY_NET = ["model=bc_resnet", "model.width=1"]


def configured(tmp_path, *overrides, total_steps: int = 20, net=TINY_NET):
    """configure_optimizers of the composed module, as a trainer estimating `total_steps` would call it."""
    cfg = compose_train(tmp_path, "data=kaggle", "data.root=unused", *net, *overrides)
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


def last_checkpoint(tmp_path) -> dict:
    return torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def trained_scheduler(tmp_path, kaggle_root, *overrides) -> tuple:
    """The config and the last checkpoint's scheduler state of a 2-epoch run of the tiny net."""
    cfg = compose_train(
        tmp_path, "data=kaggle", f"data.root={kaggle_root}", *TINY_NET, "trainer.max_epochs=2", "test=false", *overrides
    )
    train(cfg)
    return cfg, last_checkpoint(tmp_path)["lr_schedulers"][0]


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


def test_default_is_adamw_with_per_step_warmup_cosine(tmp_path):
    """The classes the README names for `python -m speechcls.train` with no overrides."""
    _, config = configured(tmp_path)
    assert type(config["optimizer"]) is torch.optim.AdamW
    assert type(config["lr_scheduler"]["scheduler"]) is SequentialLR
    assert (config["lr_scheduler"]["interval"], config["lr_scheduler"]["frequency"]) == ("step", 1)


def test_steplr_follows_its_closed_form(tmp_path):
    cfg, config = configured(tmp_path, "optimizer=adam", "scheduler=steplr", "scheduler.scheduler.step_size=3")
    lr, step_size, gamma = cfg.optimizer.lr, cfg.scheduler.scheduler.step_size, cfg.scheduler.scheduler.gamma
    lrs = lrs_over(config["optimizer"], config["lr_scheduler"]["scheduler"], 3 * step_size + 2)
    assert lrs == pytest.approx([lr * gamma ** (n // step_size) for n in range(len(lrs))], rel=1e-12)


def test_steplr_is_stepped_once_per_epoch_in_training(tmp_path, kaggle_root):
    cfg, state = trained_scheduler(tmp_path, kaggle_root, "optimizer=adam", "scheduler=steplr", "scheduler.scheduler.step_size=1")
    # 2 epochs of 3 batches (the fixture's 24 training clips in batches of 8): stepped per batch it would be 6.
    assert state["last_epoch"] == 2
    assert state["_last_lr"] == [pytest.approx(cfg.optimizer.lr * cfg.scheduler.scheduler.gamma**2, rel=1e-12)]


def test_seed_tutorial_builds_the_tutorials_optimizer_and_schedule(tmp_path):
    cfg, config = configured(tmp_path, "experiment=seed_tutorial", net=[])
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert type(optimizer) is torch.optim.Adam and type(scheduler) is StepLR
    group = optimizer.param_groups[0]
    settings = {key: group[key] for key in ("lr", "betas", "eps", "weight_decay")}
    assert settings == {"lr": 1e-4, "betas": (0.9, 0.99), "eps": 1e-6, "weight_decay": 5e-4}
    assert (scheduler.step_size, scheduler.gamma, config["lr_scheduler"]["interval"]) == (20, 0.1, "epoch")
    assert cfg.trainer.max_epochs == 30


def test_steplr_and_multistep_step_per_epoch_at_their_milestones(tmp_path):
    _, steplr = configured(tmp_path, "scheduler=steplr", "optimizer.lr=1.0")
    assert steplr["lr_scheduler"]["interval"] == "epoch"
    lrs = lrs_over(steplr["optimizer"], steplr["lr_scheduler"]["scheduler"], 21)
    assert lrs[19] == 1.0 and lrs[20] == pytest.approx(steplr["lr_scheduler"]["scheduler"].gamma)
    _, multistep = configured(tmp_path, "scheduler=multistep", "optimizer.lr=1.0")
    assert multistep["lr_scheduler"]["interval"] == "epoch"
    lrs = lrs_over(multistep["optimizer"], multistep["lr_scheduler"]["scheduler"], 26)
    assert (lrs[14], lrs[15], lrs[25]) == pytest.approx((1.0, 0.1, 0.01))


def test_cosine_warms_up_then_decays_to_zero_over_the_trainers_steps(tmp_path):
    _, config = configured(
        tmp_path, "optimizer=adamw", "scheduler=cosine", "scheduler.scheduler.warmup_fraction=0.1", "optimizer.lr=1e-3",
        total_steps=100,
    )  # fmt: skip
    assert config["lr_scheduler"]["interval"] == "step"
    assert type(config["lr_scheduler"]["scheduler"]) is SequentialLR
    lrs = lrs_over(config["optimizer"], config["lr_scheduler"]["scheduler"], 101)
    peak = max(lrs)
    assert peak == pytest.approx(1e-3) and lrs.index(peak) == 10
    assert lrs[:10] == sorted(lrs[:10]) and lrs[10:] == sorted(lrs[10:], reverse=True)
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("total_steps", "warmup_fraction", "eta_min"), [(10, 0.2, 0.2), (583, 0.05, 0.0), (3, 0.0, 0.0)])
def test_warmup_cosine_follows_its_closed_form(total_steps, warmup_fraction, eta_min):
    """Linear from lr/(w+1) to lr over w steps, then a cosine from lr down to eta_min at the last step."""
    lr = 2.0
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = warmup_cosine(optimizer, total_steps=total_steps, warmup_fraction=warmup_fraction, eta_min=eta_min)
    w = max(1, round(warmup_fraction * total_steps))

    def closed_form(step: int) -> float:
        if step < w:
            return lr * (step + 1) / (w + 1)
        return eta_min + (lr - eta_min) * 0.5 * (1 + math.cos(math.pi * (step - w) / (total_steps - w)))

    lrs = lrs_over(optimizer, scheduler, total_steps + 1)
    assert lrs == pytest.approx([closed_form(step) for step in range(total_steps + 1)], rel=1e-9, abs=1e-12)


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


def test_cosine_is_stepped_every_batch_and_lasts_max_epochs(tmp_path, kaggle_root):
    cfg, state = trained_scheduler(tmp_path, kaggle_root, "optimizer=adamw", "scheduler=cosine", "trainer.gradient_clip_val=1.0")
    steps = 2 * math.ceil(24 / 8)  # the fixture's 24 training clips in batches of 8; stepped per epoch it would be 2
    assert state["last_epoch"] == steps
    # The warmup ended after round(0.05 * 6) = 1 step: the cosine was sized by the 2 epochs and ended at 0.
    assert state["_milestones"] == [1]
    assert state["_last_lr"] == [pytest.approx(0.0, abs=1e-12)]
