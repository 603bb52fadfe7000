import json
import math

import torch

from speechcls.bench import main


def test_the_benchmark_reports_data_training_and_prediction_both_ways(tmp_path, capsys):
    out = tmp_path / "bench"
    tiny = ["--clips", "24", "--steps", "2", "--predict-clips", "4", "--batch-size", "8", "--repeats", "1"]
    main([*tiny, "--device", "cpu", "--out", str(out)])
    result = json.loads((out / "bench.json").read_text())
    names = [row["measurement"] for row in result["rows"]]
    assert [name.split(",")[0] for name in names] == ["data path"] * 3 + ["training ResNet18", "prediction"]
    assert "cold cache" in names[0] and "warm cache, on device" in names[2]
    for row in result["rows"]:
        assert row["tutorial"] > 0 and row["ours"] > 0 and math.isclose(row["ratio"], row["ours"] / row["tutorial"])
    machine = result["machine"]
    assert machine["device"] == "cpu" and machine["torch"] == torch.__version__ and machine["torch_threads"] >= 1
    assert result["settings"]["train_clips"] == 19
    table = (out / "bench.md").read_text()
    assert "| measurement | tutorial clips/s | ours clips/s | ours / tutorial | target |" in table
    assert table.count("\n| ") == 6 and "torch threads" in table
    assert table in capsys.readouterr().out
