"""The tutorial's pipeline against ours, on the same files in one run: `python -m speechcls.bench`.

    python -m speechcls.bench --clips 2000 --steps 20 --device cpu --out outputs/bench [overrides]

Clips per second both ways, and their ratio (torch's threads as OMP_NUM_THREADS sets them), for
1. the data path: from files to a batch of log-mels on the device (the tutorial: decode and a new
   MelSpectrogram + AmplitudeToDB per item, no workers; ours: the waveform cache, cold and warm, read by
   a DataLoader or held on the device, log-mels computed per batch on the device);
2. training ResNet18 for `--steps` steps (the tutorial: 3-channel ResNet18 on per-item features in a plain
   loop; ours: `python -m speechcls.train`'s composed config through Lightning, augment=none so that both
   do the same work, with any extra Hydra overrides given);
3. prediction: the tutorial's per-file loop (speechcls.tutorial_baseline) against our batched predict;
4. detection: `python -m speechcls.detect`'s audio seconds per second (conf/detector's settings) against
   real time, which is its target's unit (it has no tutorial counterpart).

`--clips` rows are sampled from the train.csv of `--data`, a Kaggle-layout folder (default: the
built-in synthetic set, data/synthetic). Every figure is the best of `--repeats` rounds that run both
ways in turn. Writes bench.json and bench.md.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, RandomSampler

from speechcls.allocator import keep_freed_memory
from speechcls.audio import SAMPLE_RATE
from speechcls.config import CONFIG_DIR, fit_setup
from speechcls.data.cache import WaveCache
from speechcls.data.dataset import WaveformDataset
from speechcls.data.device_batches import DeviceBatches
from speechcls.data.tables import read_table
from speechcls.inference import predict_probabilities
from speechcls.models.torchvision_nets import TorchvisionClassifier
from speechcls.module import SpeechClassifier, build_module
from speechcls.tutorial_baseline import TutorialDataset, predict_per_file

# Ratios to the tutorial's way asked for on the 2-core CPU (warm data path, training, prediction).
TARGETS = {"data": 20.0, "training": 1.3, "prediction": 10.0, "detect": 30.0}


def default_data() -> Path:
    """The built-in synthetic set (`data=synthetic`, the default), generated first if missing, as training does."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        data = compose(config_name="train").data
    return instantiate(data.synthesizer).ensure(data.root)


def our_config(
    root: Path, work: Path, device: str, batch_size: int, overrides: Iterable[str], entry: str = "train"
) -> DictConfig:
    """The config `python -m speechcls.<entry>` composes (train or predict), on the benchmark's sample of
    the folder `root` (work/train.csv)."""
    base = [
        "data=kaggle",
        f"data.root={root}",
        f"data.train_csv={work / 'train.csv'}",
        f"data.batch_size={batch_size}",
        f"paths.root_dir={work}",
        f"paths.output_dir={work / 'run'}",
        "trainer=gpu" if device == "cuda" else "trainer=cpu",
    ]
    if entry == "train":
        base.append("augment=none")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=entry, overrides=[*base, *overrides])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_second(run: Callable[[], float], device: torch.device) -> float:
    """Clips (or audio seconds) per second of `run`, which returns how many it handled."""
    start = time.perf_counter()
    handled = run()
    synchronize(device)
    return handled / (time.perf_counter() - start)


def best_rates(ways: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Each way's best clips per second over `repeats` rounds that run the ways in turn, so that a burst
    of other processes' load on a shared machine hits every way alike and the best round shows each."""
    best = dict.fromkeys(ways, 0.0)
    for _ in range(repeats):
        for name, way in ways.items():
            best[name] = max(best[name], way())
    return best


def drain(batches: Iterable, device: torch.device, features: torch.nn.Module | None = None) -> int:
    """Move every batch to the device (computing log-mels of waveform batches there); the clip count."""
    clips = 0
    for inputs, labels in batches:
        inputs = inputs.to(device, non_blocking=True)
        if features is not None:
            features(inputs)
        clips += len(labels)
    return clips


def bench_data(cfg: DictConfig, dataset: WaveformDataset, device: torch.device, repeats: int) -> dict[str, float]:
    """Clips per second from files to log-mels on the device: the tutorial's way, ours cold and warm.

    A warm round is one epoch of a loader made once, as in training (whose DataLoader workers persist):
    the cache's lookup and the workers' start are paid once a run, not once an epoch. The cold round
    builds a new cache, then makes one pass.
    """
    paths, labels, batch_size, workers = dataset.paths, dataset.labels, cfg.data.batch_size, cfg.data.num_workers
    features = instantiate(cfg.features).to(device)
    cold_dirs = (Path(cfg.paths.cache_dir) / f"cold-{i}" for i in itertools.count())

    def cached(cache_dir: Path = Path(cfg.paths.cache_dir)) -> WaveCache:
        return WaveCache.ensure(paths, cache_dir, dataset.sample_rate, dataset.length)

    def on_device(cache: WaveCache) -> DeviceBatches:
        return DeviceBatches(cache, labels, batch_size, dataset.length, RandomSampler(labels), device=device)

    tutorial = DataLoader(TutorialDataset(paths, labels, cfg.features), batch_size=batch_size, shuffle=True)
    warm = cached()
    items = WaveformDataset(paths, labels, train=True, length=dataset.length, cache=warm)
    loader = DataLoader(
        items, batch_size, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    device_batches = on_device(warm)
    ways = {
        "tutorial": lambda: drain(tutorial, device),
        "cold cache (build + one pass, on device)": lambda: drain(on_device(cached(next(cold_dirs))), device, features),
        f"warm cache, DataLoader ({workers} workers)": lambda: drain(loader, device, features),
        "warm cache, on device": lambda: drain(device_batches, device, features),
    }
    return best_clip_rates(ways, device, repeats)


def best_clip_rates(ways: dict[str, Callable[[], float]], device: torch.device, repeats: int) -> dict[str, float]:
    """`best_rates` of ways that return how many clips (or audio seconds) they handled, timed whole."""
    return best_rates({name: lambda way=way: per_second(way, device) for name, way in ways.items()}, repeats)


def bench_prediction(
    module: SpeechClassifier, files: list[Path], batch_size: int, workers: int, device: torch.device, repeats: int
) -> dict[str, float]:
    """Clips per second of predicting `files`: the tutorial's loop (per file, new feature objects,
    autograd on) against ours (the validation data path in batches, without the waveform cache, through
    Lightning's predict loop under inference mode). Both decode every file."""
    trainer = L.Trainer(
        accelerator=device.type, devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    loader = DataLoader(WaveformDataset(files), batch_size=batch_size, num_workers=workers)
    # The tutorial's network in the layout it was saved in (NCHW); ours is channels_last (conf/train.yaml).
    tutorial = copy.deepcopy(module).to(memory_format=torch.contiguous_format)
    ways = {
        "tutorial": lambda: len(predict_per_file(tutorial, files, device)),
        "ours": lambda: len(predict_probabilities(module, loader, trainer)),
    }
    return best_clip_rates(ways, device, repeats)


class StepTimer(L.Callback):
    """Clips per second of every training step after the first: a Lightning callback, or `step` called
    at the end of each step of a plain loop."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.clips = 0

    def step(self, clips: int, device: torch.device) -> None:
        synchronize(device)
        self.clips += clips if self.ends else 0
        self.ends.append(time.perf_counter())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.step(len(batch[1]), module.device)

    @property
    def rate(self) -> float:
        return self.clips / (self.ends[-1] - self.ends[0])


def bench_tutorial_training(
    cfg: DictConfig, dataset: WaveformDataset, classes: int, steps: int, device: torch.device
) -> float:
    """Clips per second of steps 2..`steps` of the tutorial's loop (the first one warms up)."""
    net = TorchvisionClassifier("resnet18", classes, in_channels=3).to(device)
    # The same optimizer, without the fused kernel the tutorial did not use.
    optimizer = instantiate(cfg.optimizer, fused=None)(params=net.parameters())
    items = TutorialDataset(dataset.paths, dataset.labels, cfg.features)
    loader = DataLoader(items, batch_size=cfg.data.batch_size, shuffle=True)
    batches = itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), steps)
    running_loss, timer = 0.0, StepTimer()
    for spectrogram, labels in batches:
        spectrogram, labels = spectrogram.to(device), labels.to(device)
        loss = torch.nn.functional.cross_entropy(net(spectrogram), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item()  # the tutorial's running loss: a sync every step
        timer.step(len(labels), device)
    return timer.rate


def bench_our_training(cfg: DictConfig, steps: int) -> float:
    """Clips per second of steps 2..`steps` of `python -m speechcls.train`'s setup (cache warm)."""
    datamodule, module = fit_setup(cfg)
    timer = StepTimer()
    trainer = instantiate(
        cfg.trainer,
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        callbacks=[timer, instantiate(cfg.callbacks.cpu_tuning)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.rate


def bench_detect(module: SpeechClassifier, device: torch.device, seconds: float, repeats: int) -> tuple[float, int]:
    """Audio seconds per second of detect's sliding windows with `module` over `seconds` of noise in 60 s
    blocks, best of `repeats`; and the hop."""
    model = module.to(device).eval()
    settings = OmegaConf.load(Path(CONFIG_DIR) / "detector" / "default.yaml")
    detector = instantiate(settings, model=lambda wave: model(wave.to(device)), classes=module.classes)
    blocks = (0.1 * torch.randn(int(seconds * SAMPLE_RATE))).split(60 * SAMPLE_RATE)
    rates = best_clip_rates({"detect": lambda: detector.posteriors(blocks).length / SAMPLE_RATE}, device, repeats)
    return rates["detect"], detector.hop


def machine(device: torch.device, freed_memory_kept: bool) -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "freed_memory_kept": freed_memory_kept,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def row(measurement: str, tutorial: float, ours: float, target: float | None) -> dict:
    return {"measurement": measurement, "tutorial": tutorial, "ours": ours, "ratio": ours / tutorial, "target": target}


def run(args: argparse.Namespace, freed_memory_kept: bool) -> dict:
    """All four measurements; returns what is written to `args.out`/bench.json (and bench.md)."""
    device = torch.device(args.device)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="speechcls-bench-") as work:
        work = Path(work)
        root = args.data or default_data()
        table = read_table(root / "train.csv")
        table.sample(n=min(args.clips, len(table)), random_state=0).to_csv(work / "train.csv", index=False)
        cfg = our_config(root, work, device.type, args.batch_size, args.overrides)
        L.seed_everything(cfg.seed, workers=True)
        # The training split of our data module: the files both ways read in every measurement.
        split = instantiate(cfg.data, cache=False, on_device=False)
        split.setup("fit")
        train = split.splits["train"]
        data_rates = bench_data(cfg, train, device, args.repeats)
        training = best_rates(
            {
                "tutorial": lambda: bench_tutorial_training(cfg, train, len(split.classes), args.steps, device),
                "ours": lambda: bench_our_training(cfg, args.steps),
            },
            args.repeats,
        )
        files = train.paths[: args.predict_clips]
        # Prediction's own loader settings (on a CPU no workers), with the command line's data overrides.
        data_overrides = [o for o in args.overrides if o.startswith("data.")]
        workers = our_config(root, work, device.type, args.batch_size, data_overrides, "predict").data.num_workers
        module = build_module(cfg, split.classes)
        prediction = bench_prediction(module, files, args.batch_size, workers, device, args.repeats)
        detect_rate, hop = bench_detect(module, device, args.detect_seconds, args.repeats)
    tutorial_data = data_rates.pop("tutorial")
    rows = [
        row(f"data path, {name}", tutorial_data, rate, TARGETS["data"] if "warm" in name else None)
        for name, rate in data_rates.items()
    ]
    name = f"training ResNet18, {args.steps} steps"
    rows.append(row(name, training["tutorial"], training["ours"], TARGETS["training"]))
    name = f"prediction, {len(files)} files ({workers} loader workers)"
    rows.append(row(name, prediction["tutorial"], prediction["ours"], TARGETS["prediction"]))
    name = f"detect, {args.detect_seconds:g} s of audio, hop {hop} (audio s/s; tutorial: real time)"
    rows.append(row(name, 1.0, detect_rate, TARGETS["detect"]))
    result = {
        # Other processes' load, on which a shared machine's figures depend.
        "machine": {**machine(device, freed_memory_kept), "load_average_1min": [load_before, os.getloadavg()[0]]},
        "settings": {
            **{key: vars(args)[key] for key in ("clips", "steps", "batch_size", "repeats", "detect_seconds")},
            "train_clips": len(train),
            "data": str(args.data or "the synthetic set"),
            "overrides": list(args.overrides),
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2))
    (args.out / "bench.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    policy = "" if m["omp_wait_policy"] == "default" else f", OMP_WAIT_POLICY={m['omp_wait_policy']}"
    malloc = "freed memory kept" if m["freed_memory_kept"] else "default malloc"
    overrides = f", overrides {' '.join(s['overrides'])}" if s["overrides"] else ""
    lines = [
        f"Device {m['device']}, CPU {m['cpu']} ({m['cpu_cores']} cores, {m['torch_threads']} torch threads{policy}, {malloc}), "
        f"torch {m['torch']}, {m['date']}, load average {m['load_average_1min'][0]:.1f} before and "
        f"{m['load_average_1min'][1]:.1f} after; {s['train_clips']} training clips ({s['data']}), "
        f"batch {s['batch_size']}, best of {s['repeats']} interleaved rounds{overrides}.",
        "",
        "| measurement | tutorial clips/s | ours clips/s | ours / tutorial | target |",
        "|---|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        met = "met" if r["target"] is not None and r["ratio"] >= r["target"] else "missed"
        target = "" if r["target"] is None else f"≥ {r['target']:g}× {met}"
        rates = f"{r['tutorial']:,.0f} | {r['ours']:,.0f} | {r['ratio']:.1f}×"
        lines.append(f"| {r['measurement']} | {rates} | {target} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=2000, help="clips to sample (80%% train)")
    parser.add_argument("--steps", type=int, default=20, help="training steps each way (the first is not timed)")
    parser.add_argument(
        "--predict-clips", type=int, default=None,
        help="files each way predicts (default: the whole training split, so that per-call costs are amortised "
        "as over a real test set)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every measurement; the best counts")
    parser.add_argument("--detect-seconds", type=float, default=120.0, help="seconds of audio detect slides over")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data", type=Path, default=None, help="a Kaggle-layout folder to sample clips from (default: the synthetic set)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"))
    parser.add_argument(
        "--default-malloc", action="store_true",
        help="leave glibc's malloc as it is instead of keeping freed memory (speechcls.allocator), both ways",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of our config, e.g. module.channels_last=false")
    args = parser.parse_args(argv)
    # As CPU runs of our entry points do (callbacks.cpu_tuning); process-wide, so for both ways.
    kept = not args.default_malloc and keep_freed_memory()
    if args.default_malloc:
        args.overrides.append("callbacks.cpu_tuning.reuse_freed_memory=false")
    result = run(args, kept)
    print(markdown(result))
    print(f"written: {args.out / 'bench.json'}, {args.out / 'bench.md'}")


if __name__ == "__main__":
    main()
