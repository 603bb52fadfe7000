import itertools
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import compose_train, run_train
from speechcls import summarize
from speechcls.config import CONFIG_DIR
from speechcls.train import run

BEST = "best val/acc"
# One training batch, then validation and test: checkpoints are written (unlike trainer=debug).
ONE_BATCH = ("trainer.max_epochs=1", "+trainer.limit_train_batches=1", "logger=csv")


def read_summary(sweep):
    return pd.read_csv(sweep / "summary.csv", dtype={"optimizer.lr": str, "module.label_smoothing": str})


def test_grid_sweep_in_parallel_summarizes_every_job_and_keeps_going_past_failures(tmp_path, kaggle_root):
    # A 2x2 grid on two joblib workers; optimizer.lr=-1 makes two of the jobs fail.
    sweep = tmp_path / "sweep"
    result = run_train(
        tmp_path, kaggle_root, "optimizer.lr=1e-3,-1", "module.label_smoothing=0.0,0.1", *ONE_BATCH,
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", multirun=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]

    table = read_summary(sweep)
    assert len(table) == 4
    assert set(zip(table["optimizer.lr"], table["module.label_smoothing"])) == set(
        itertools.product(["0.001", "-1"], ["0.0", "0.1"])
    )
    assert "data.root" not in table.columns  # shared by every job: in the Markdown header instead
    ok, failed = table.iloc[:2], table.iloc[2:]  # failed jobs sort last
    assert set(ok.status) == {"ok"} and set(ok["optimizer.lr"]) == {"0.001"}
    assert list(ok[BEST]) == sorted(ok[BEST], reverse=True)
    for _, row in ok.iterrows():
        record = json.loads((sweep / str(row.job) / "metrics.json").read_text())
        assert row[BEST] == record["metrics"]["best/val/acc"] and not math.isnan(row["test/acc"])
        assert row.checkpoint == record["best_checkpoint"]
        assert Path(row.checkpoint).parent == sweep / str(row.job) / "checkpoints"
        assert row.epochs == 1 and row.wall_time_s > 0
    assert set(failed.status) == {"failed"} and set(failed["optimizer.lr"]) == {"-1"}
    assert set(failed.error) == {"ValueError: Invalid learning rate: -1"} and failed[BEST].isna().all()
    assert "Traceback" in (sweep / str(failed.job.iloc[0]) / "train.log").read_text()

    markdown = (sweep / "summary.md").read_text()
    assert "4 jobs, sorted by best val/acc (max)" in markdown and f"`data.root={kaggle_root}`" in markdown
    assert markdown.split("\n\n", 2)[2] in result.stdout  # the table was printed

    # Rebuilt after the fact, the summary is the same.
    csv = (sweep / "summary.csv").read_text()
    (sweep / "summary.csv").unlink()
    (sweep / "summary.md").unlink()
    summarize.main([str(sweep)])
    assert (sweep / "summary.csv").read_text() == csv and (sweep / "summary.md").read_text() == markdown


def test_a_failure_is_recorded_in_a_multirun_and_raised_in_a_single_run(tmp_path, kaggle_root):
    cfg = compose_train(tmp_path, "data=kaggle", f"data.root={kaggle_root}", "trainer=debug", "optimizer.lr=-1")
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        run(cfg, multirun=False)
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert math.isnan(run(cfg, multirun=True))
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"] == "ValueError: Invalid learning rate: -1"


def test_optuna_search_runs_trials_in_its_search_space(tmp_path, kaggle_root):
    sweep = tmp_path / "sweep"
    result = run_train(
        tmp_path, kaggle_root, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer=debug", "logger=csv",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    table = pd.read_csv(sweep / "summary.csv")
    assert len(table) == 2 and set(table.status) == {"ok"}
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    # run_train fixes data.batch_size on the command line, which takes it out of the search space.
    assert set(results["best_params"]) == {
        "optimizer.lr", "optimizer.weight_decay", "model", "augment.wave.time_shift.max_seconds",
        "augment.wave.gain.max_db", "augment.wave.noise.p", "augment.spectrogram.spec_augment.freq_width",
        "augment.spectrogram.spec_augment.time_width",
    }  # fmt: skip
    assert results["best_value"] == table[BEST].max()
    for job in ("0", "1"):
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        params = dict(override.split("=", 1) for override in overrides)
        assert 1e-4 <= float(params["optimizer.lr"]) <= 3e-3 and 1e-6 <= float(params["optimizer.weight_decay"]) <= 1e-2
        assert params["model"] in {"resnet18", "mobilenet_v3_small", "bc_resnet"}


def test_launcher_and_search_configs_compose():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        slurm = compose("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
        joblib = compose("train", ["hydra/launcher=joblib"], return_hydra_config=True)
        optuna = compose("train", ["hparams_search=optuna"], return_hydra_config=True)
    launcher = slurm.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
    assert joblib.hydra.launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert optuna.hydra.sweeper.direction == "maximize" and optuna.hydra.mode.name == "MULTIRUN"


def write_job(sweep, job, overrides, record=None):
    hydra_dir = sweep / job / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (hydra_dir / "config.yaml").write_text(yaml.safe_dump({"optimized_metric": "val/f1", "seed": 42}))
    if record is not None:
        (sweep / job / "metrics.json").write_text(json.dumps(record))


def test_summary_ranks_by_the_optimized_metric_and_lists_unfinished_jobs(tmp_path):
    def ok(f1):
        return {"status": "ok", "metrics": {"val/f1": 0.0, "best/val/f1": f1, "test/f1": f1 - 0.1}, "epochs": 3}

    write_job(tmp_path, "2", ["seed=1", "model=a"], ok(0.5))
    write_job(tmp_path, "10", ["seed=1", "model=b"], ok(0.7))
    write_job(tmp_path, "3", ["seed=1", "model=c"], {"status": "failed", "error": "RuntimeError: out of\nmemory"})
    write_job(tmp_path, "4", ["seed=1", "model=d"])  # killed before it wrote metrics.json
    table, sorted_by, shared, varied = summarize.summarize(tmp_path)
    assert sorted_by == "best val/f1" and shared == {"seed": "1"} and varied == ["model"]
    assert list(table.model) == ["b", "a", "c", "d"]
    assert list(table.status) == ["ok", "ok", "failed", "unfinished"]
    assert table["test/f1"][0] == pytest.approx(0.6) and table.error[2] == "RuntimeError: out of memory"
    assert table.error[3] == "no metrics.json: killed, or still running"
    assert list(summarize.summarize(tmp_path, mode="min").table.model) == ["a", "b", "c", "d"]
    with pytest.raises(FileNotFoundError, match="no job directories"):
        summarize.summarize(tmp_path / "c")


def test_seed_statistics_are_the_mean_and_sample_std_over_seeds_of_each_recipe_and_data_set(tmp_path):
    # Stub jobs of a recipe study: 2 recipes x 2 data sets x 3 seeds of known metrics, one job failed and
    # one killed (neither counts), one group with a single finished seed (no spread).
    def ok(f1, kokoro, epoch_s):
        metrics = {"best/val/f1": f1 + 0.01, "test/f1": f1, "test/f1/kokoro": kokoro, "time/epoch_s": epoch_s}
        return {"status": "ok", "metrics": metrics, "epochs": 2, "wall_time_s": 10 * epoch_s}

    values = {}  # (experiment, data) -> [(test/f1, test/f1/kokoro, time/epoch_s) of each finished seed]
    job = 0
    for experiment, data, seed in itertools.product(["best", "rn18"], ["small", "voices"], ["1", "2", "3"]):
        overrides = ["hparams_search=study", f"experiment={experiment}", f"data={data}", f"seed={seed}"]
        if (experiment, data, seed) == ("rn18", "voices", "2"):
            write_job(tmp_path, str(job), overrides, {"status": "failed", "error": "boom", "wall_time_s": 3.0})
        elif (experiment, data) == ("rn18", "small") and seed != "1":
            write_job(tmp_path, str(job), overrides)  # killed
        else:
            f1, kokoro, epoch_s = 0.5 + 0.1 * job + 0.01 * job**2, 0.3 + 0.02 * job, 4.0 + job
            write_job(tmp_path, str(job), overrides, ok(f1, kokoro, epoch_s))
            values.setdefault((experiment, data), []).append((f1, kokoro, epoch_s))
        job += 1

    summary = summarize.summarize(tmp_path)
    table = summarize.seed_statistics(summary)
    assert list(table.columns[:4]) == ["experiment", "data", "jobs", "finished"]
    assert list(zip(table.experiment, table.data)) == [("best", "small"), ("best", "voices"), ("rn18", "small"), ("rn18", "voices")]
    assert list(table.jobs) == [3, 3, 3, 3] and list(table.finished) == [3, 3, 1, 2]
    for _, row in table.iterrows():
        seeds = values[(row.experiment, row.data)]
        for index, metric in enumerate(["test/f1", "test/f1/kokoro", "time/epoch_s"]):
            column = [seed[index] for seed in seeds]
            assert row[f"{metric} mean"] == pytest.approx(statistics.mean(column))
            if len(column) > 1:
                assert row[f"{metric} std"] == pytest.approx(statistics.stdev(column))  # sample std, ddof 1
            else:
                assert math.isnan(row[f"{metric} std"])
        assert row["wall_time_s mean"] == pytest.approx(statistics.mean(10 * seed[2] for seed in seeds))

    markdown = summarize.write_summary(tmp_path)
    written = pd.read_csv(tmp_path / "summary_by_recipe.csv")
    pd.testing.assert_frame_equal(written, table, check_dtype=False)
    best_small = [seed[0] for seed in values[("best", "small")]]
    assert f"{statistics.mean(best_small):.4f} ± {statistics.stdev(best_small):.4f}" in markdown
    assert (tmp_path / "summary_by_recipe.png").read_bytes().startswith(b"\x89PNG")


def test_a_sweep_without_seeds_gets_no_seed_statistics(tmp_path):
    write_job(tmp_path, "0", ["model=a"], {"status": "ok", "metrics": {"best/val/f1": 0.5}})
    write_job(tmp_path, "1", ["model=b"], {"status": "ok", "metrics": {"best/val/f1": 0.6}})
    assert "over seeds" not in summarize.write_summary(tmp_path)
    assert not (tmp_path / "summary_by_recipe.csv").exists()
