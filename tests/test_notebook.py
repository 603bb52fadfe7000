from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "tutorial.ipynb"


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_tutorial_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHCLS_ROOT", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "best validation accuracy" in outputs and "submission accuracy" in outputs
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # class balance, waveforms and spectrograms, confusion matrix
    run = tmp_path / "outputs" / "notebook"
    assert (run / "predict" / "submission.csv").is_file()
    assert (run / "evaluate" / "confusion_matrix.png").is_file()
