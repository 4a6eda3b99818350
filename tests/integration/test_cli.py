"""The real ``flarena`` CLI in subprocesses, on tiny specs, as a new user would run it.

Bad input, determinism, output files, failed runs, entry-point plugins, parallel workers, help.
Interruption and resume are in ``test_cli_resume.py``.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from .helpers import METRICS, TINY_TOML, cli, committed, explain, read_runs, write_toml

pytestmark = pytest.mark.integration


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_refused(proc, before: set[str], root: Path, *needles: str) -> str:
    """Exit code 2, one ``error:`` line on stderr naming ``needles``, nothing on stdout or disk."""
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, explain(proc)
    line = lines[0]
    assert line.startswith("error: "), explain(proc)
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert proc.stdout.strip() == "", explain(proc)
    assert tree(root) == before, f"bad input wrote {sorted(tree(root) - before)}"
    return line


# --- 1. bad input --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """``flarena run spec.toml *args --out <case dir>/<out>``, where spec.toml holds ``toml``.

    A ``command`` replaces the whole ``run ...`` command line (``{root}``: the case directory).
    """

    args: tuple[str, ...]
    needles: tuple[str, ...]  # the one error line must contain each
    toml: str = TINY_TOML
    out: str = "out"  # relative to the case's directory
    command: tuple[str, ...] = ()


MATRIX_BAD_CELL = '[matrix]\n"algorithm.lr" = [0.1, -1.0]\n'
MATRIX_BAD_CROSSED = '[matrix]\nseed = [0, 1]\n"data.n_clients" = [2, 5000]\n'
SHORT = 'name = "tiny"\ndevice = "cpu"\n'
BAD_INPUT = {
    "unknown-dataset": Bad(
        ("--set", "data.dataset=mnist6k"),
        ("'mnist6k'", "did you mean 'mnist5k'", "allowed:", "digits", "mnist5k"),
    ),
    "misspelt-set-key": Bad(
        ("--set", "algorithm.lrr=0.1"), ("'lrr'", "did you mean 'lr'", "batch_size")
    ),
    "misspelt-top-key-in-file": Bad(
        (), ("'roundz'", "did you mean 'rounds'"), SHORT + "roundz = 3\n"
    ),
    "misspelt-data-key-in-file": Bad(
        (), ("'data.n_client'", "'n_clients'"), SHORT + "[data]\nn_client = 3\n"
    ),
    "misspelt-param-in-file": Bad(
        (), ("'lrr'", "did you mean 'lr'"), SHORT + '[algorithm]\nname = "fedavg"\nlrr = 0.1\n'
    ),
    "malformed-toml": Bad(
        (), ("malformed TOML", "spec.toml", "line 3"), SHORT + "rounds = \n[data\n"
    ),
    "missing-config": Bad((), ("spec.toml", "not found"), toml=""),
    "negative-lr": Bad(("--set", "algorithm.lr=-0.1"), ("lr", "-0.1", "> 0")),
    "dirichlet-alpha-zero": Bad(
        ("--set", "data.partition=dirichlet", "--set", "data.partition.alpha=0"),
        ("alpha", "> 0", "got 0"),
    ),
    "more-clients-than-examples": Bad(
        ("--set", "data.n_clients=100000"), ("data.n_clients", "100000", "training examples")
    ),
    "unknown-device": Bad(("--device", "tpu"), ("'tpu'", "cpu", "cuda")),
    "jobs-zero": Bad(("--jobs", "0"), ("jobs", "0", ">= 1")),
    "override-without-value": Bad(("--set", "rounds"), ("'rounds'", "key=value")),
    # Even as root (who may write anywhere) no directory can be made under a regular file.
    "out-under-a-regular-file": Bad((), ("afile", "not a directory"), out="afile/out"),
    "bad-matrix-cell": Bad((), ("matrix cell 2/2", "lr", "-1.0"), TINY_TOML + MATRIX_BAD_CELL),
    "bad-cell-of-crossed-matrix": Bad(
        (), ("matrix cell 2/4", "data.n_clients", "5000"), TINY_TOML + MATRIX_BAD_CROSSED
    ),
    # Byzantine robustness: threat model, rule requirements, rule parameters
    "attack-needs-what-the-threat-model-forbids": Bad(
        (
            "--set",
            "attack=alie",
            "--set",
            "attack.n_malicious=1",
            "--set",
            "attack.sees_honest_updates=false",
        ),
        ("'alie'", "honest clients' updates", "attack.sees_honest_updates = false", "gaussian"),
    ),
    "unknown-attack": Bad(("--set", "attack=alei"), ("'alei'", "did you mean 'alie'")),
    "krum-needs-more-rows": Bad(
        ("--set", "defense.aggregator=krum", "--set", "defense.aggregator.f=1"),
        ("krum", "n > 2f + 2", "n = 4"),
    ),
    "trimmed-mean-f-at-half": Bad(
        ("--set", "defense.aggregator=trimmed_mean", "--set", "defense.aggregator.f=2"),
        ("trimmed_mean", "n = 4"),
    ),
    "negative-tau": Bad(
        ("--set", "defense.aggregator=centered_clipping", "--set", "defense.aggregator.tau=-1"),
        ("tau", "-1", "> 0"),
    ),
    "show-a-directory-without-results": Bad(
        (), ("not a flarena results directory",), command=("show", "{root}/empty")
    ),
    "show-a-missing-directory": Bad(
        (), ("not a flarena results directory",), command=("show", "{root}/missing")
    ),
    "list-an-unknown-kind": Bad(
        (), ("'atack'", "did you mean 'attack'"), command=("list", "atack")
    ),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, set[str], Path]]:
    """Run every BAD_INPUT case, as many at a time as there are cores (each is a cold start)."""
    roots = {case: tmp_path_factory.mktemp(case) for case in BAD_INPUT}

    def one(case: str) -> tuple[Any, set[str], Path]:
        bad, root = BAD_INPUT[case], roots[case]
        if bad.toml:
            (root / "spec.toml").write_text(bad.toml)
        (root / "afile").write_text("a regular file\n")
        (root / "empty").mkdir()
        before = tree(root)
        args = ("run", root / "spec.toml", *bad.args, "--out", root / bad.out, "--no-progress")
        if bad.command:
            args = tuple(a.format(root=root) for a in bad.command)
        return cli(*args, cwd=root), before, root

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        return dict(zip(BAD_INPUT, pool.map(one, BAD_INPUT), strict=True))


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_with_one_line(refusals: dict, case: str) -> None:
    proc, before, root = refusals[case]
    assert_refused(proc, before, root, *BAD_INPUT[case].needles)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_output_dir_is_refused(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "spec.toml")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        before = tree(tmp_path)
        proc = cli("run", config, "--out", ro / "out", cwd=tmp_path)
        assert_refused(proc, before, tmp_path, "not writable", "ro")
    finally:
        ro.chmod(0o700)


# --- 2. determinism and 7. output files --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run of the tiny spec (shared by the output and determinism checks)."""
    root = tmp_path_factory.mktemp("tiny")
    config = write_toml(root / "spec.toml")
    proc = cli("run", config, "--out", root / "a", "--no-progress", cwd=root)
    assert proc.returncode == 0, explain(proc)
    assert "results:" in proc.stdout and "all runs" in proc.stdout, explain(proc)
    return root / "a"


def test_output_files(tiny_run: Path) -> None:
    out = tiny_run
    for name in (
        "runs.parquet",
        "rounds.parquet",
        "label_hist.parquet",
        "manifest.json",
        "report.md",
    ):
        assert (out / name).is_file(), name
    # Result files follow the umask like any other file, not mkstemp's private 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "runs.parquet").stat().st_mode & 0o777 == 0o666 & ~umask

    runs = read_runs(out)
    assert len(runs) == 1 and runs["status"].tolist() == ["ok"]
    run_id = runs["run_id"].iloc[0]
    assert runs["data.dataset.name"].iloc[0] == "digits" and runs["model.name"].iloc[0] == "mlp"
    assert 0.5 < runs["final_test_accuracy"].iloc[0] <= 1.0
    assert runs["version.torch"].notna().all() and runs["version.flarena"].notna().all()

    manifest = json.loads((out / "manifest.json").read_text())
    assert {"torch", "flarena", "python"} <= set(manifest["versions"])
    assert manifest["machine"]["cpu_count"] >= 1 and "platform" in manifest["machine"]
    assert [c["run_id"] for c in manifest["cells"]] == [run_id]
    assert manifest["cells"][0]["spec"]["data"]["dataset"]["name"] == "digits"

    rounds = pd.read_parquet(out / "rounds.parquet")
    assert list(rounds.columns) == ["run_id", "round", "node", "metric", "value"]
    assert str(rounds["node"].dtype) == "Int64"  # nullable: NA for global metrics
    assert set(rounds["run_id"]) == {run_id}
    glob = rounds[rounds["node"].isna()]
    assert {"test_accuracy", "test_loss", "train_loss"} <= set(glob["metric"])
    assert sorted(glob.loc[glob["metric"] == "test_accuracy", "round"]) == [1, 2]
    local = rounds[rounds["metric"] == "local_loss"]
    assert sorted(local["node"].unique()) == [0, 1, 2, 3]

    hist = pd.read_parquet(out / "label_hist.parquet")
    assert list(hist.columns) == ["run_id", "client", "label", "count"]
    assert hist["count"].sum() == 1437  # digits: 1,797 images, 20% held out for testing

    png = out / "plots" / "test_accuracy_vs_round.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1024
    report = (out / "report.md").read_text()
    assert "plots/test_accuracy_vs_round.png" in report and "## Plots" in report
    assert "1 ok, 0 failed" in report
    assert not list(out.rglob("*.tmp"))


def test_same_spec_and_seed_give_the_same_numbers(tiny_run: Path) -> None:
    root = tiny_run.parent
    proc = cli("run", root / "spec.toml", "--out", root / "b", "--no-progress", cwd=root)
    assert proc.returncode == 0, explain(proc)
    a, b = read_runs(tiny_run), read_runs(root / "b")
    assert a["run_id"].tolist() == b["run_id"].tolist()
    pd.testing.assert_frame_equal(a[METRICS], b[METRICS], check_exact=True)

    def values(out: Path) -> pd.DataFrame:
        r = pd.read_parquet(out / "rounds.parquet")
        r = r[~r["metric"].str.startswith("time.")]
        return r.sort_values(["round", "metric", "node"]).reset_index(drop=True)

    ra, rb = values(tiny_run), values(root / "b")
    assert len(ra) > 0
    pd.testing.assert_frame_equal(ra, rb, check_exact=True)


# --- 4. failed runs ------------------------------------------------------------------------------

BAD_MODELS = '''\
"""Model factories for flarena's integration tests: one whose forward raises, one giving NaN."""
import math

from torch import nn


class Raises(nn.Module):
    def __init__(self, d, k):
        super().__init__()
        self.lin = nn.Linear(d, k)

    def forward(self, x):
        raise RuntimeError("boom: this model always fails")


class NaNLogits(nn.Linear):
    def forward(self, x):
        return super().forward(x.flatten(1)) * float("nan")


def raising(*, input_shape, num_classes):
    return Raises(math.prod(input_shape), num_classes)


def nan_logits(*, input_shape, num_classes):
    return NaNLogits(math.prod(input_shape), num_classes)
'''


def model_matrix(*names: str) -> str:
    """A ``[matrix]`` over models: ``mlp`` is the good tiny one, other names are references."""
    cells = [
        '{ name = "mlp", hidden = [32] }' if n == "mlp" else f'{{ name = "{n}" }}' for n in names
    ]
    return f"[matrix]\nmodel = [{', '.join(cells)}]\n"


@pytest.fixture
def bad_models(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "flarena_badmodels.py").write_text(BAD_MODELS)
    return lib


def test_failed_runs_are_recorded_and_the_matrix_goes_on(tmp_path: Path, bad_models: Path) -> None:
    matrix = model_matrix("flarena_badmodels:raising", "flarena_badmodels:nan_logits", "mlp")
    config = write_toml(tmp_path / "spec.toml", matrix)
    out = tmp_path / "out"
    proc = cli("run", config, "--out", out, "--no-progress", cwd=tmp_path, pythonpath=[bad_models])
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr, explain(proc)
    assert "boom: this model always fails" in proc.stderr  # said as it happens
    runs = read_runs(out).set_index("model.name")
    assert sorted(runs["status"]) == ["failed", "failed", "ok"]
    assert runs.loc["mlp", "status"] == "ok"
    assert runs.loc["flarena_badmodels:raising", "error"] == (
        "RuntimeError: boom: this model always fails"
    )
    assert "RuntimeError" in runs.loc["flarena_badmodels:raising", "traceback"]
    nan_error = runs.loc["flarena_badmodels:nan_logits", "error"]
    assert "non-finite" in nan_error, nan_error
    report = (out / "report.md").read_text()
    assert "## Failed runs" in report and "boom" in report
    assert "failed run(s)" in proc.stdout


def test_fail_fast_stops_at_the_first_failure(tmp_path: Path, bad_models: Path) -> None:
    matrix = model_matrix("flarena_badmodels:raising", "mlp")
    config = write_toml(tmp_path / "spec.toml", matrix)
    out = tmp_path / "out"
    proc = cli(
        "run",
        config,
        "--out",
        out,
        "--fail-fast",
        "--no-progress",
        cwd=tmp_path,
        pythonpath=[bad_models],
    )
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr, explain(proc)
    assert proc.stderr.strip().splitlines()[-1].startswith("error: "), explain(proc)
    assert "--fail-fast" in proc.stderr and "boom" in proc.stderr
    runs = read_runs(out)
    assert runs["model.name"].tolist() == ["flarena_badmodels:raising"]  # the good cell never ran
    assert runs["status"].tolist() == ["failed"]
    assert len(committed(out)) == 1
    proc = cli("show", out, cwd=tmp_path)  # nothing finished well, and it says so
    assert proc.returncode == 0, explain(proc)
    assert "no finished run" in proc.stdout and "1 failed run(s)" in proc.stdout


def test_plugin_whose_constructor_crashes_is_refused_before_running(
    tmp_path: Path, bad_models: Path
) -> None:
    (bad_models / "flarena_badmodels.py").write_text(
        BAD_MODELS + "\n\ndef crashing(*, input_shape, num_classes):\n"
        "    raise ZeroDivisionError('factory bug')\n"
    )
    matrix = model_matrix("mlp", "flarena_badmodels:crashing")
    config = write_toml(tmp_path / "spec.toml", matrix)
    before = tree(tmp_path)
    proc = cli(
        "run",
        config,
        "--out",
        tmp_path / "out",
        "--no-progress",
        cwd=tmp_path,
        pythonpath=[bad_models],
    )
    assert_refused(proc, before, tmp_path, "matrix cell 2/2", "ZeroDivisionError", "factory bug")


# --- 5. plugins from entry points ----------------------------------------------------------------


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    from conftest import make_plugin_dist

    return make_plugin_dist(tmp_path / "site")


def _row(stdout: str, name: str) -> str:
    """The line of ``flarena list``'s table whose name column is ``name``."""
    lines = [ln for ln in stdout.splitlines() if [c.strip() for c in ln.split("│")][2:3] == [name]]
    assert len(lines) == 1, stdout
    return lines[0]


def test_list_shows_entry_point_plugins(tmp_path: Path, plugin_site: Path) -> None:
    proc = cli("list", "attack", cwd=tmp_path, pythonpath=[plugin_site])
    assert proc.returncode == 0, explain(proc)
    assert "flarena-testplugin 0.3.1 (entry point)" in _row(proc.stdout, "negative_mean")
    assert "flarena" in _row(proc.stdout, "none")

    proc = cli("list", cwd=tmp_path, pythonpath=[plugin_site])
    assert proc.returncode == 0, explain(proc)
    assert "Traceback" not in proc.stderr, explain(proc)
    broken = _row(proc.stdout, "broken_attack")
    assert "[failed to load]" in broken and "flarena_testplugin_missing" in broken
    assert "flarena-testplugin 0.3.1 (entry point)" in _row(proc.stdout, "test_median")
    assert "Weighted average" in _row(proc.stdout, "mean")  # built-ins are listed as well


def test_run_with_entry_point_plugins_records_their_distribution(
    tmp_path: Path, plugin_site: Path
) -> None:
    config = write_toml(tmp_path / "spec.toml")
    out = tmp_path / "out"
    proc = cli(
        "run", config, "--out", out, "--no-progress",
        "--set", "attack.name=negative_mean", "--set", "attack.n_malicious=1",
        "--set", "defense.aggregator=test_median",
        cwd=tmp_path, pythonpath=[plugin_site],
    )  # fmt: skip
    assert proc.returncode == 0, explain(proc)
    row = read_runs(out).iloc[0]
    assert row["status"] == "ok" and row["attack.name"] == "negative_mean"
    assert "flarena-testplugin==0.3.1" in json.loads(row["plugin_distributions"])
    plugins = {(p["kind"], p["name"]): p for p in json.loads(row["plugins"])}
    for key in (("attack", "negative_mean"), ("aggregator", "test_median")):
        assert plugins[key]["distribution"] == "flarena-testplugin"
        assert plugins[key]["version"] == "0.3.1"
        assert plugins[key]["origin"] == "entry_point"
    assert plugins[("model", "mlp")]["distribution"] == "flarena"


# --- 6. parallel workers and `flarena show` ------------------------------------------------------


def test_jobs_2_runs_every_cell_once_and_show_prints_the_summary(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "spec.toml", '[matrix]\nseed = [0, 1]\n"data.n_clients" = [2, 3]\n'
    )
    out = tmp_path / "out"
    proc = cli("run", config, "--out", out, "--jobs", "2", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    runs = read_runs(out)
    cells = [c["run_id"] for c in json.loads((out / "manifest.json").read_text())["cells"]]
    assert len(cells) == 4 and len(set(cells)) == 4
    assert sorted(runs["run_id"]) == sorted(cells)
    assert (runs["status"] == "ok").all()
    rounds = pd.read_parquet(out / "rounds.parquet")
    assert set(rounds["run_id"]) == set(cells)
    assert not list(out.rglob("*.tmp"))

    proc = cli("show", out, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert "4 runs" in proc.stdout
    assert "n_clients=2" in proc.stdout and "n_clients=3" in proc.stdout
    assert "acc_mean" in proc.stdout
    # `flarena show` of a directory without results: see BAD_INPUT


# --- 8. help -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            [],
            ["Usage: flarena", "Examples", "flarena run configs/demo.toml", "run", "list", "show"],
        ),
        (["run"], ["Examples", "flarena run configs/demo.toml --set", "--jobs", "--fail-fast"]),
        (["list"], ["Examples", "flarena list"]),
        (["show"], ["Example", "flarena show"]),
    ],
    ids=["flarena", "run", "list", "show"],
)
def test_help_mentions_examples(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    proc = cli(*args, "--help", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    for needle in needles:
        assert needle in proc.stdout, f"{needle!r} not in\n{proc.stdout}"
