"""The README's preset table and the presets cannot drift apart: every preset has its row, and every figure the
table quotes as measured is in that preset's [measured] table (which records the command, commit, machine, date)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from eqprop.train import list_presets, load_preset

README = Path(__file__).resolve().parents[1] / "README.md"


def _rows() -> dict[str, list[str]]:
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Presets") :].split("\n\n")[1]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].strip("`")
        if name and name not in ("preset",) and not set(name) <= {"-"}:
            rows[name] = cells
    return rows


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def test_every_preset_has_one_row_and_every_row_a_preset() -> None:
    assert sorted(_rows()) == list_presets()


def test_every_measured_percentage_in_the_readme_is_in_its_presets_measured_table() -> None:
    for name, cells in _rows().items():
        measured = load_preset(name).measured
        quoted = re.findall(r"(\d+\.\d+)(?=%| /)", cells[2])
        losses = re.findall(r"loss (\d+\.\d+)", cells[2])  # a regression task's figure
        if not measured:
            assert not losses, f"{name}: the README quotes losses {losses} but the preset records no run"
            assert not quoted, f"{name}: the README quotes {quoted} but the preset records no run"
            continue
        assert quoted or losses, f"{name}: the preset records a run the README does not quote"
        for key in ("command", "machine", "date", "commit"):
            assert key in measured, f"{name}: [measured] lacks {key}"
        values = {round(100 * v, 2) for k, v in measured.items() for v in _numbers(v)}
        for q in quoted:
            assert float(q) in values, f"{name}: the README quotes {q}% but [measured] holds no such accuracy"
        raw = [v for value in measured.values() for v in _numbers(value)]
        for q in losses:  # quoted to its last digit: some recorded value rounds to it
            half = 0.5 * 10 ** -len(q.split(".")[1])
            assert any(abs(v - float(q)) <= half for v in raw), (
                f"{name}: the README quotes loss {q}, not in [measured]"
            )
