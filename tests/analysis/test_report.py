"""`eqprop report`: the run's self-contained HTML page, checked as parsed HTML and as a real browser renders it."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from eqprop.cli import main
from eqprop.errors import ConfigError
from eqprop.train import fit
from eqprop.train.monitor import Monitoring

pytestmark = pytest.mark.usefixtures("quiet_torch")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fake_data: Path) -> Path:
    """A finished 2-epoch run with every TensorBoard scalar (diagnostics every 4 steps, probes every 8)."""
    from eqprop.train import apply_overrides, load_preset

    config = apply_overrides(
        load_preset("fmnist-quick"),
        ["system.sizes=[784,32,10]", "train.batch_size=16", "train.epochs=2", f'data.data_dir="{fake_data}"'],
    )
    run = tmp_path_factory.mktemp("report") / "run"
    fit(config, run, progress=False, monitoring=Monitoring(diagnostics_every=4, probe_every=8))
    return run


def _images(page: str) -> list[np.ndarray]:
    import matplotlib.image

    found = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    return [matplotlib.image.imread(io.BytesIO(base64.b64decode(b)), format="png") for b in found]


def test_the_report_holds_every_section_with_real_plots(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(trained)]) == 0
    assert '"report"' in capsys.readouterr().out
    page = (trained / "report.html").read_text(encoding="utf-8")
    for heading in ("Summary", "Learning curves", "Relaxations", "Gradient agreement", "Configuration"):
        assert f"<h2>{heading}</h2>" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    images = _images(page)
    assert len(images) == 5  # per epoch, per step, relaxations, saturation and norms, gradient agreement
    for img in images:  # each plot draws something: not one flat colour
        assert img.shape[0] > 100 and img.shape[1] > 100 and float(img[..., :3].std()) > 0.02
    assert (
        "&quot;kind&quot;: &quot;deep_hopfield&quot;" in page and "test_accuracy" in page
    )  # the config, escaped


def test_a_run_without_tensorboard_still_reports(fake_data: Path, tmp_path: Path) -> None:
    from eqprop.analysis.report import write_report
    from eqprop.train import apply_overrides, load_preset

    config = apply_overrides(
        load_preset("fmnist-quick"), ["system.sizes=[784,16,10]", f'data.data_dir="{fake_data}"']
    )
    run = tmp_path / "run"
    fit(config, run, progress=False, monitoring=Monitoring(tensorboard=False))
    page = write_report(run).read_text(encoding="utf-8")
    assert "wrote no TensorBoard files" in page and len(_images(page)) == 1
    with pytest.raises(ConfigError, match="not a run folder"):
        write_report(tmp_path)


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; CI installs it)"
)
def test_the_report_renders_in_a_headless_browser(trained: Path, tmp_path: Path) -> None:
    """Debian's chromium, offline, renders the page: the DOM has its sections and images, and the screenshot
    shows the plots (matplotlib's first line colour, not a blank page)."""
    assert main(["report", str(trained), "--out", str(tmp_path / "page.html")]) == 0
    url = (tmp_path / "page.html").resolve().as_uri()
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2400",
    ]
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<img") == 5 and "Gradient agreement" in dom.stdout
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    assert float(pixels.std()) > 0.05  # not a blank page
    blue = np.array([0x1F, 0x77, 0xB4]) / 255  # matplotlib's first line colour (C0)
    near = (np.abs(pixels - blue) < 0.08).all(axis=-1)
    assert near.sum() > 500, "the screenshot shows no plotted line"
