"""Every Python snippet of the README runs, from the repository's root as the README's commands do."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet-{k}" for k in range(len(SNIPPETS))])
def test_readme_snippet_runs(code, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md snippet", "exec"), {"__name__": "readme"})
