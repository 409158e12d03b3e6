"""Every preset family reaches the same weights after 20 steps as it did before the run layer was reshaped.

``fingerprints.json`` holds the SHA-256 of the weights each case of ``fingerprint.CASES`` reached after 2 epochs
of 10 batches, computed with the code as it was before issue 10 (commit 41537f5). The check runs in a fresh
process, where ``fingerprint.py`` pins the kernels (one thread, portable ATen kernels, MKL's reproducible mode,
no oneDNN/NNPACK) so that the bytes do not depend on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_every_preset_family_trains_to_the_stored_weights() -> None:
    stored = json.loads((HERE / "fingerprints.json").read_text(encoding="utf-8"))
    run = subprocess.run(
        [sys.executable, str(HERE / "fingerprint.py")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    now = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(now) == set(stored)
    changed = sorted(label for label in stored if now[label] != stored[label])
    assert not changed, f"these cases no longer train to the stored weights: {changed}"
