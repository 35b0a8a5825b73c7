"""Every Python snippet of the README runs, in a fresh interpreter from the repository's root as a reader would."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.slow  # each snippet runs in a fresh interpreter
@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet-{k}" for k in range(len(SNIPPETS))])
def test_readme_snippet_runs(code):
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert done.returncode == 0, f"README snippet failed:\n{code}\n{done.stderr[-2000:]}"
