"""The notebooks in notebooks/ run top to bottom on tiny synthetic data, and are committed without outputs.

Each notebook is executed with nbclient in a `python3` kernel, which must be this interpreter (ipykernel
installs that kernel spec into the virtualenv's share/jupyter). The dataset and the run folders come through
the notebooks' environment variables: AUDIENCE_DATA (the session's tiny dataset), AUDIENCE_NB_RUNS (a
temporary folder). Any cell error fails the test.

`python tests/test_notebooks.py` clears the outputs, execution counts and execution metadata of every notebook
in place: run it before committing a notebook that was executed in Jupyter.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "python3"
CELL_TIMEOUT_S = 600


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def _execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # cwd of the kernel, as in Jupyter
    )
    return client.execute()


def clear_outputs(path: Path) -> bool:
    """Strip outputs, execution counts and nbclient's execution timings; True when the file changed."""
    nb = _read(path)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after, encoding="utf-8")
    return after != before


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_eda.ipynb", "02_candidate_generators.ipynb", "03_ranking.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or an execution count; "
        "clear them with `python tests/test_notebooks.py`"
    )
    source = "\n".join(cell.source for cell in nb.cells)
    assert not re.search(r"truth_dir|_synthetic_truth|TRUTH_DIRNAME", source), (
        f"{path.name}: a notebook never reads the hidden synthetic truth (evaluate reports the oracle row)"
    )


def test_python3_kernel_is_this_interpreter(tmp_path):
    """nbclient's `python3` kernel must resolve to this virtualenv, or the notebooks would run elsewhere."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")])
    out = _execute(nb).cells[0].outputs
    printed = "".join(o.get("text", "") for o in out if o.output_type == "stream").strip()
    assert Path(printed).resolve() == Path(sys.prefix).resolve(), (printed, sys.prefix)


@pytest.fixture(scope="session")
def notebook_runs(tmp_path_factory) -> Path:
    """One parent for every notebook's run folder, so the holdout runs (keyed by content) are shared."""
    return tmp_path_factory.mktemp("notebook-runs")


@pytest.fixture
def notebook_env(tiny_dir, notebook_runs, monkeypatch):
    """The kernel inherits this process's environment: the session's tiny dataset and the run folders."""
    monkeypatch.setenv("AUDIENCE_DATA", str(tiny_dir))
    monkeypatch.delenv("AUDIENCE_SUBSAMPLE", raising=False)
    monkeypatch.setenv("AUDIENCE_NB_RUNS", str(notebook_runs))
    monkeypatch.setenv("AUDIENCE_THREADS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, notebook_env):
    nb = _execute(_read(path))  # raises CellExecutionError (with the cell and traceback) on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors


if __name__ == "__main__":
    for notebook in NOTEBOOKS:
        print(f"{notebook.relative_to(ROOT)}: {'cleared' if clear_outputs(notebook) else 'already clean'}")
