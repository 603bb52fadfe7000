import json

import torch

from speechcls.bench import best_rates, main, markdown


def test_best_rates_interleave_the_ways_and_keep_each_ones_best_round():
    calls, rates = [], {"tutorial": iter([3.0, 5.0, 4.0]), "ours": iter([9.0, 7.0, 8.0])}

    def way(name):
        calls.append(name)
        return next(rates[name])

    best = best_rates({name: lambda name=name: way(name) for name in rates}, repeats=3)
    assert best == {"tutorial": 5.0, "ours": 9.0}
    assert calls == ["tutorial", "ours"] * 3  # a burst of load hits both ways alike


def test_the_table_judges_each_ratio_against_its_target():
    machine = {"device": "cpu", "cpu": "x", "cpu_cores": 2, "torch_threads": 2, "omp_wait_policy": "default",
               "freed_memory_kept": True, "torch": "2", "date": "d", "load_average_1min": [1.0, 2.0]}  # fmt: skip
    settings = {"train_clips": 8, "data": "generated", "batch_size": 8, "repeats": 1, "overrides": []}
    rows = [
        {"measurement": "met", "tutorial": 100.0, "ours": 250.0, "ratio": 2.5, "target": 1.3},
        {"measurement": "missed", "tutorial": 100.0, "ours": 1200.0, "ratio": 12.0, "target": 20.0},
        {"measurement": "untargeted", "tutorial": 100.0, "ours": 300.0, "ratio": 3.0, "target": None},
    ]
    table = markdown({"machine": machine, "settings": settings, "rows": rows})
    assert "| met | 100 | 250 | 2.5× | ≥ 1.3× met |" in table
    assert "| missed | 100 | 1,200 | 12.0× | ≥ 20× missed |" in table
    assert "| untargeted | 100 | 300 | 3.0× |  |" in table


def test_the_benchmark_reports_data_training_and_prediction_both_ways(tmp_path, capsys, kaggle_root):
    out = tmp_path / "bench"
    tiny = ["--clips", "24", "--steps", "2", "--predict-clips", "4", "--batch-size", "8", "--repeats", "1", "--detect-seconds", "3"]
    main([*tiny, "--data", str(kaggle_root), "--device", "cpu", "--out", str(out)])
    result = json.loads((out / "bench.json").read_text())
    names = [row["measurement"] for row in result["rows"]]
    assert [name.split(",")[0] for name in names] == ["data path"] * 3 + ["training ResNet18", "prediction", "detect"]
    assert "cold cache" in names[0] and "warm cache, on device" in names[2]
    # Prediction runs with speechcls.predict's loader settings: no workers on a CPU.
    assert names[4] == "prediction, 4 files (0 loader workers)"
    # Detection against real time, at conf/detector's hop.
    assert names[5] == "detect, 3 s of audio, hop 2048 (audio s/s; tutorial: real time)" and result["rows"][5]["tutorial"] == 1.0
    assert all(row["tutorial"] > 0 and row["ours"] > 0 for row in result["rows"])
    machine = result["machine"]
    assert machine["device"] == "cpu" and machine["torch"] == torch.__version__ and machine["torch_threads"] >= 1
    assert result["settings"]["train_clips"] == 19 and result["settings"]["data"] == str(kaggle_root)
    table = (out / "bench.md").read_text()
    assert table == markdown(result) and table in capsys.readouterr().out
