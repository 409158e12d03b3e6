"""Does architecture thermodynamics predict trained results? A resumable training study.

:func:`run_study` trains an iso-energetic family of architectures (from :func:`~eqprop.analysis.thermo.
shaped_family`) as backprop ReLU MLPs and as EqProp-trained deep Hopfield nets, several seeds each, and
reports how well every measure of :mod:`eqprop.analysis.thermo` predicts the test accuracy, the final train
loss and the train–test gap (Kendall τ, Spearman ρ, ρ partialled on depth, top-k, seed spread).

Each finished run is appended to ``results.jsonl`` in the study folder and skipped when the study is run
again, so a stopped study resumes where it stopped (and a larger ``seeds`` extends it).

Example:
    >>> from eqprop.analysis.study import PRESETS, run_study
    >>> summary = run_study(PRESETS["ci"], "runs/arch-study-ci", data_dir="path/to/idx")
    >>> summary["methods"]["bp"]["correlations"][0]["rho"]
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eqprop.analysis import thermo
from eqprop.analysis.thermo.report import clean_json
from eqprop.analysis.thermo.train import BackpropSettings, EqPropSettings
from eqprop.errors import ConfigError

__all__ = ["MEASURES", "METHODS", "PRESETS", "StudyConfig", "analyze_results", "family", "run_study"]

METHODS: tuple[str, ...] = ("bp", "eqprop")

MEASURES: dict[str, tuple[float, str]] = {
    "depth": (-1.0, "baseline: shallower is better (the pilot's finding)"),
    "neurons": (1.0, "baseline: more hidden neurons"),
    "energy": (1.0, "baseline: U (parameters; equal within the band's tolerance)"),
    "min_width": (1.0, "baseline: the narrowest layer (bottleneck)"),
    "perm_entropy": (1.0, "S_perm = Σ ln n_l!: more degenerate states are more probable"),
    "region_entropy": (1.0, "S_act = ln (Serra bound): more attainable activation patterns"),
    "gaussian_entropy": (1.0, "H = (n_out/2) ln(2πe n_0 Π n_l): DeepMAD's max-entropy signal entropy"),
    "effectiveness": (-1.0, "DeepMAD ρ = L / geo-mean width: lower is more effective"),
    "efficiency": (1.0, "η = H / U"),
    "relative_efficiency": (1.0, "η_rel = H / max H in the family"),
    "landauer_efficiency": (1.0, "η_L = S_act / (U ln 2)"),
    "stability_margin": (1.0, "min over in-band moves of −ΔH: a more stable state"),
    "ensemble_temperature": (1.0, "T_arch of the iso-neuron ensemble at U(a)"),
    "rank_score": (1.0, "the analyzer's rule: max H s.t. ρ ≤ ρ₀ (score = −rank)"),
    "grad_norm_init": (1.0, "baseline: ‖∇ loss‖ of the MLP at initialisation (trainability)"),
}
"""Every measure the study correlates: its direction for top-k (+1: higher predicts better) and meaning."""


@dataclass(frozen=True)
class StudyConfig:
    """The settings of a study (see :data:`PRESETS`).

    Attributes:
        name, description: what it is.
        dataset: an MNIST-family dataset (read from local IDX files).
        budget, tol: the energy ``W`` (parameters) and the relative band of the family.
        depths, shapes, random_shapes, n_max: the family (:func:`~eqprop.analysis.thermo.shaped_family`).
        seeds: how many seeds per (architecture, method): seeds ``0 … seeds−1``.
        methods: ``"bp"`` and/or ``"eqprop"``.
        test_examples: test examples (``None``: all).
        eval_train_examples: training examples on which the final train accuracy/loss is measured.
        top_k, rho_max: the k of top-k; the analyzer's ``ρ₀``.
        bp, eqprop: how each method trains.
    """

    name: str
    description: str
    dataset: str = "fashion-mnist"
    budget: int = 60000
    tol: float = 0.02
    depths: tuple[int, ...] = (1, 2, 3, 4, 6)
    shapes: tuple[str, ...] = tuple(thermo.SHAPES)
    random_shapes: int = 0
    n_max: int = 1024
    seeds: int = 2
    methods: tuple[str, ...] = METHODS
    test_examples: int | None = None
    eval_train_examples: int | None = 10000
    top_k: int = 3
    rho_max: float = 0.02
    bp: BackpropSettings = field(default_factory=BackpropSettings)
    eqprop: EqPropSettings = field(default_factory=EqPropSettings)

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ConfigError(f"methods {list(self.methods)!r}: choose from {', '.join(METHODS)}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")


PRESETS: dict[str, StudyConfig] = {
    "ci": StudyConfig(
        name="ci",
        description="smoke test: 3 tiny MLPs / DHNs (≈8k parameters), 1 seed, 300 examples; seconds",
        budget=8000,
        tol=0.05,
        depths=(1, 2),
        shapes=("constant", "decreasing"),
        seeds=1,
        test_examples=200,
        eval_train_examples=300,
        top_k=2,
        bp=BackpropSettings(epochs=2, batch_size=32, train_examples=300),
        eqprop=EqPropSettings(
            epochs=1,
            batch_size=32,
            train_examples=300,
            free_iterations=8,
            free_per_layer=4,
            nudged_iterations=4,
            nudged_per_layer=2,
        ),
    ),
    "fmnist-60k": StudyConfig(
        name="fmnist-60k",
        description="19 iso-parameter architectures at W ≈ 60k (±2%), depths 1-6, five shapes; "
        "BP: Adam, 5 epochs on 60k; EqProp: Adam, 2 epochs on 10k; 2 seeds",
        budget=60000,
    ),
    "fmnist-200k": StudyConfig(
        name="fmnist-200k",
        description="19 iso-parameter architectures at W ≈ 200k (±2%), depths 1-6, five shapes; "
        "BP: Adam, 4 epochs on 60k; EqProp: Adam, 2 epochs on 6k; 2 seeds",
        budget=200000,
        bp=BackpropSettings(epochs=4),
        eqprop=EqPropSettings(train_examples=6000),
    ),
}
"""Study presets. ``ci`` runs in seconds on synthetic data; the Fashion-MNIST ones take tens of minutes
on a 2-core CPU (the EqProp runs dominate)."""

RESULTS = "results.jsonl"
CONFIG = "study_config.json"
SUMMARY = "study.json"


def config_to_dict(config: StudyConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def family(config: StudyConfig, n_in: int = 784, n_out: int = 10) -> list[tuple[thermo.Arch, str]]:
    """The study's architectures with their shape names.

    Raises:
        ConfigError: if no architecture of the configured shapes fits the band.
    """
    members = thermo.shaped_family(
        n_in,
        n_out,
        config.budget,
        config.depths,
        shapes=config.shapes,
        random_shapes=config.random_shapes,
        tol=config.tol,
        n_max=config.n_max,
    )
    if not members:
        raise ConfigError(
            f"study {config.name!r}: no architecture fits budget {config.budget} ± {config.tol:.0%}"
        )
    return members


def _read_results(path: Path) -> list[dict[str, Any]]:
    """The finished runs; a torn last line (a kill during the write) is dropped from the file."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    records, good = [], 0
    for line in text.splitlines(keepends=True):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
        if not line.endswith("\n"):
            records.pop()
            break
        good += len(line)
    if good != len(text):
        path.write_text(text[:good], encoding="utf-8")
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _check_same_study(out: Path, config: StudyConfig) -> None:
    """Refuse to mix runs of different settings; ``seeds`` and ``methods`` only select runs."""
    path = out / CONFIG
    mine = json.loads(json.dumps(config_to_dict(config)))  # tuples as lists, as saved
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        differ = sorted(k for k in mine if k not in ("seeds", "methods") and saved.get(k) != mine[k])
        if differ:
            raise ConfigError(
                f"{out} holds a study with other settings ({', '.join(differ)} differ)",
                hint="choose another --out, or delete the folder to start over",
            )
    path.write_text(json.dumps(mine, indent=2) + "\n", encoding="utf-8")


def run_study(
    config: StudyConfig,
    out: str | os.PathLike[str],
    *,
    data_dir: str | None = None,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train every (architecture, method, seed) not yet in ``out/results.jsonl``, then analyse them all.

    Writes ``results.jsonl`` (one line per run), ``study_config.json``, ``study.json`` (the analysis),
    ``runs.csv``, ``measures.csv``, ``correlations.csv`` and, when matplotlib is installed, ``study.png``
    and ``correlations.png``.

    Returns:
        The analysis (as in ``study.json``) plus ``new_runs`` and ``files``.

    Raises:
        ConfigError: ``out`` holds a study with other settings, or bad settings.
        DataError: the dataset files are missing.
    """
    import torch
    from tqdm import tqdm

    from eqprop.analysis.thermo.train import load_study_data, train_backprop, train_eqprop

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_study(out, config)
    members = family(config)
    done = {(r["arch"], r["method"], r["seed"]) for r in _read_results(out / RESULTS)}
    todo = [
        (arch, method, seed)
        for seed in range(config.seeds)
        for method in config.methods
        for arch, _ in members
        if (str(arch), method, seed) not in done
    ]
    say = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    if todo:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ConfigError(f"--device {device!r} is not a device name", hint="use cpu or cuda") from err
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: CUDA is not available on this machine", hint="use --device cpu"
            )
        sizes = [
            config.bp.train_examples if m == "bp" else config.eqprop.train_examples for m in config.methods
        ]
        data = load_study_data(
            config.dataset,
            data_dir=data_dir,
            device=dev,
            test_examples=config.test_examples,
            train_examples=None if None in sizes else max(s for s in sizes if s is not None),
        )
        if data.train.x.shape[1] != 784:
            raise ConfigError(
                f"the study's family is built for 784 inputs; {config.dataset} has {data.train.x.shape[1]}"
            )
        bar = tqdm(
            total=len(todo),
            unit="run",
            file=sys.stderr,
            disable=None if progress else True,
            dynamic_ncols=True,
        )
        for arch, method, seed in todo:
            bar.set_description(f"{method} {arch} seed {seed}")
            if method == "bp":
                result = train_backprop(
                    arch, data, config.bp, seed=seed, eval_train_examples=config.eval_train_examples
                )
            else:
                result = train_eqprop(
                    arch, data, config.eqprop, seed=seed, eval_train_examples=config.eval_train_examples
                )
            record = {"arch": str(arch), "method": method, "seed": seed, **result}
            _append(out / RESULTS, record)
            acc = record.get("test_accuracy")
            say(
                f"{method:>6} {arch!s:<28} seed {seed}: "
                + (f"test acc {acc:.4f}" if acc is not None else "diverged")
                + f" ({record['seconds']:.1f} s)"
            )
            bar.update(1)
        bar.close()
    records = _read_results(out / RESULTS)
    summary = analyze_results(config, members, records)
    from eqprop.analysis.thermo.report import write_study_files

    files = write_study_files(out, summary, records)
    return summary | {"new_runs": len(todo), "files": files}


def _measures(
    config: StudyConfig, archs: list[thermo.Arch], records: list[dict[str, Any]]
) -> dict[str, np.ndarray]:
    band = (config.budget * (1 - config.tol), config.budget * (1 + config.tol))
    ranked = thermo.analyze(
        archs, rho_max=config.rho_max, band=band, n_max=config.n_max, depths=config.depths
    )
    by_arch = {a.arch: a for a in ranked}
    rows = [by_arch[a] for a in archs]
    grad = {
        a: [
            r["grad_norm_init"]
            for r in records
            if r["arch"] == str(a) and r.get("grad_norm_init") is not None
        ]
        for a in archs
    }
    return {
        "depth": np.array([a.depth for a in archs], float),
        "neurons": np.array([a.neurons for a in archs], float),
        "energy": np.array([r.energy for r in rows]),
        "min_width": np.array([min(a.hidden, default=0) for a in archs], float),
        "perm_entropy": np.array([r.perm_entropy for r in rows]),
        "region_entropy": np.array([r.region_entropy for r in rows]),
        "gaussian_entropy": np.array([r.gaussian_entropy for r in rows]),
        "effectiveness": np.array([r.effectiveness for r in rows]),
        "efficiency": np.array([r.efficiency for r in rows]),
        "relative_efficiency": np.array([r.relative_efficiency for r in rows]),
        "landauer_efficiency": np.array([r.landauer_efficiency for r in rows]),
        "stability_margin": np.array([r.stability.margin for r in rows]),
        "ensemble_temperature": np.array([r.ensemble_temperature for r in rows]),
        "rank_score": np.array([-float(r.rank) for r in rows]),
        "grad_norm_init": np.array([float(np.mean(grad[a])) if grad[a] else math.nan for a in archs]),
    }


def analyze_results(
    config: StudyConfig, members: list[tuple[thermo.Arch, str]], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """The study's analysis from its run records: per method, every measure against every target."""
    archs = [a for a, _ in members]
    names = [str(a) for a in archs]
    measures = _measures(config, archs, records)
    directions = {k: d for k, (d, _) in MEASURES.items()}
    methods: dict[str, Any] = {}
    for method in config.methods:
        grids = {
            t: np.full((len(archs), config.seeds), np.nan) for t in ("test_accuracy", "train_loss", "gap")
        }
        runs = 0
        for r in records:
            if r["method"] != method or r["arch"] not in names or r["seed"] >= config.seeds:
                continue
            runs += 1
            for t, grid in grids.items():
                v = r.get(t)
                grid[names.index(r["arch"]), r["seed"]] = math.nan if v is None else float(v)
        acc = grids["test_accuracy"]
        seen = np.isfinite(acc).any(axis=1)
        means = np.full(len(archs), np.nan)
        means[seen] = np.nanmean(acc[seen], axis=1)
        sds = [float(np.nanstd(row, ddof=1)) for row in acc if np.isfinite(row).sum() >= 2]
        rows = thermo.validate(
            measures, grids, control=measures["depth"], directions=directions, k=config.top_k
        )
        best = int(np.nanargmax(means)) if seen.any() else None
        methods[method] = {
            "runs": runs,
            "diverged": sum(1 for r in records if r["method"] == method and r.get("diverged")),
            "mean_seed_sd_test_accuracy": float(np.mean(sds)) if sds else None,
            "best": {"arch": names[best], "test_accuracy": float(means[best])} if best is not None else None,
            "test_accuracy": {
                n: (float(m) if math.isfinite(m) else None) for n, m in zip(names, means, strict=True)
            },
            "correlations": rows,
            "selection": _selection(config, archs, means),
        }
    return clean_json(
        {
            "study": config.name,
            "config": config_to_dict(config),
            "family": [
                {"arch": n, "shape": s, **{k: float(v[i]) for k, v in measures.items()}}
                for i, (n, (_, s)) in enumerate(zip(names, members, strict=True))
            ],
            "measures": {k: {"direction": d, "meaning": m} for k, (d, m) in MEASURES.items()},
            "methods": methods,
        }
    )


def _selection(config: StudyConfig, archs: list[thermo.Arch], means: np.ndarray) -> list[dict[str, Any]]:
    """Which architecture the analyzer's rule (max H s.t. ρ ≤ ρ₀) picks for several ρ₀, and how it did."""
    out = []
    for rho_max in (0.01, 0.02, 0.03, 0.05, 0.08, None):
        pick = thermo.analyze(archs, rho_max=rho_max, ensemble=False)[0]
        if rho_max is not None and not pick.feasible:
            out.append({"rho_max": rho_max, "arch": None, "test_accuracy": None})
            continue
        acc = means[archs.index(pick.arch)]
        out.append({"rho_max": rho_max, "arch": str(pick.arch), "test_accuracy": float(acc)})
    return out
