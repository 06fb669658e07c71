"""docs/walkthrough.ipynb runs from top to bottom, and draws its pictures inline.

Executed with nbclient (a test extra) in a fresh kernel, in a temporary folder (the notebook
writes step.html where it runs), with this checkout first on the kernel's path. Without
nbclient or a kernel it skips with the reason (a failure in CI, which installs both).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import _skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "walkthrough.ipynb"


@pytest.mark.slow
def test_the_walkthrough_notebook_runs_and_shows_its_pictures(tmp_path, monkeypatch):
    try:
        import nbformat
        from nbclient import NotebookClient
        from jupyter_client.kernelspec import NoSuchKernel
    except ImportError:
        _skip_or_fail('nbclient is not installed (pip install -e ".[test]")', "CI")
    if shutil.which("dot") is None:
        _skip_or_fail("graphviz `dot` is not installed (apt-get install graphviz): the notebook draws graphs", "CI")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    try:
        client.execute()
    except NoSuchKernel:
        _skip_or_fail("no python3 Jupyter kernel (pip install ipykernel)", "CI")
    seconds = time.perf_counter() - start

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    pictures = [output for output in outputs if output.output_type in ("display_data", "execute_result")]
    assert sum("image/svg+xml" in output.data for output in pictures) == 3  # the expression, the layer, the step
    assert sum("image/png" in output.data for output in pictures) == 1  # the loss curve
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "dL/da = 6.0" in printed and "test accuracy" in printed
    assert 'id="backward-steps"' in (tmp_path / "step.html").read_text(encoding="utf-8")
    assert seconds < 60, f"the notebook took {seconds:.0f} s; keep it under about 30"
    print(f"notebook executed in {seconds:.1f} s", file=sys.stderr)
