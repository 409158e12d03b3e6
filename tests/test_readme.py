"""The README's Python example runs as written (documentation that cannot rot silently)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.usefixtures("quiet_torch")
def test_readme_python_example_runs() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## The Python API\n\n```python\n(.*?)```", text, re.S)
    assert match, "the README lost its Python API example"
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), str(README), "exec"), namespace)  # our own README
    est = namespace["est"]
    assert est.grads["system.weights.0"].shape == (1024, 784)  # type: ignore[attr-defined]
    assert namespace["eq"].state[-1].shape == (16, 10)  # type: ignore[attr-defined]
