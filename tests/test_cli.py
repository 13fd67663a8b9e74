"""The CLI: the example runs and writes provenance; bad input exits 2 and writes nothing."""
import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "gvlmodel.workflow.cli", *args], capture_output=True, text=True)


def test_example_writes_trajectory_summary_and_provenance(tmp_path):
    out = tmp_path / "ex"
    r = run("example", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = (out / "trajectory.csv").read_text().splitlines()
    assert lines[0].startswith("time_days,dose_mg,bcr_abl_percent,X0")
    assert len(lines) == 1 + 62  # days 0, 30, ..., 1800 and the end of the course, 1825
    assert lines[-1].startswith("1825,")
    assert json.loads((out / "summary.json").read_text())["days_reached"] == 1825.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert {"gvlmodel_version", "git_commit", "seed", "config"} <= set(prov)


def test_bad_config_exits_2_and_writes_nothing(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('variant = "H2"\nbogus_key = 1\n')
    out = tmp_path / "out"
    r = run("example", str(cfg), "--out", str(out))
    assert r.returncode == 2
    assert "bogus_key" in r.stderr
    assert not out.exists()
    cfg.write_text('[parameters]\nd0 = -1.0\n')
    r = run("example", str(cfg), "--out", str(out))
    assert r.returncode == 2 and "d0" in r.stderr and not out.exists()


def test_bad_example_values_and_paths_exit_2_name_the_field_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    cases = {
        "days = nan\n": "days",
        "days = inf\n": "days",
        "interval_days = 1e-9\n": "interval_days",
        "interval_days = nan\n": "interval_days",
        "[parameters]\nz_kill = 1e300\n": "z_kill",  # beyond the table's bounds
    }
    for text, field in cases.items():
        cfg = tmp_path / "c.toml"
        cfg.write_text(text)
        r = run("example", str(cfg), "--out", str(out))
        assert r.returncode == 2 and field in r.stderr and "Traceback" not in r.stderr, (text, r.stderr)
        assert not out.exists()
    r = run("example", str(tmp_path), "--out", str(out))  # a folder as config
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    for cmd in (["example"], ["simulate", "experiments/hess2005.toml"], ["dynamics", "experiments/dynamics.toml"]):
        r = run(*cmd, "--out", str(a_file))
        assert r.returncode == 2 and "--out" in r.stderr and "Traceback" not in r.stderr, (cmd, r.stderr)
    assert a_file.read_text() == "x"


def test_example_solver_failure_exits_1_and_reports_it_without_nan(tmp_path, monkeypatch, capsys):
    """A failed solve (here: a step budget too small, which the example config does not expose)
    is written as data - status, message, the rows reached - and the command exits 1."""
    from gvlmodel.workflow import cli

    import importlib

    sim_mod = importlib.import_module("gvlmodel.model.simulate")
    real_simulate = sim_mod.simulate
    monkeypatch.setattr(sim_mod, "simulate", lambda *a, **k: real_simulate(*a, **{**k, "max_steps": 5}))
    out = tmp_path / "ex"
    assert cli.main(["example", "--out", str(out)]) == 1
    assert "the solve failed (status 1)" in capsys.readouterr().err
    text = (out / "summary.json").read_text()
    assert "NaN" not in text
    summary = json.loads(text)
    assert summary["status"] == 1 and summary["final_bcr_abl_percent"] is None and summary["days_reached"] < 1825
    last = (out / "trajectory.csv").read_text().splitlines()[-1]
    assert "nan" not in last and last.split(",")[2] == ""


def test_export_sbml_overwrites_its_own_file(tmp_path):
    """export-sbml's --out names a file, so an existing file is not a folder mistake."""
    import importlib.util

    import pytest

    if importlib.util.find_spec("libsbml") is None:
        pytest.skip("needs the sbml extra")
    out = tmp_path / "model.xml"
    for _ in range(2):
        r = run("export-sbml", "--variant", "H2", "--parameters", "default", "--out", str(out))
        assert r.returncode == 0, r.stderr
    assert out.read_text().lstrip().startswith("<?xml")


def test_out_below_a_file_threads_and_scheduler_are_refused_before_any_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = run("example", "--out", str(afile / "sub"))
    assert r.returncode == 2 and "--out" in r.stderr and "is a file" in r.stderr
    for t in ("0", "100000"):
        r = run("reproduce", "--quick", "--threads", t, "--results", str(tmp_path / "rq"))
        assert r.returncode == 2 and "--threads" in r.stderr
        r = run("simulate", "experiments/hess2005.toml", "--threads", t, "--out", str(tmp_path / "sim"))
        assert r.returncode == 2 and "--threads" in r.stderr
    r = run("sensitivity", "experiments/sensitivity_hess2005.toml", "--quick", "--scheduler", "not-an-address",
            "--out", str(tmp_path / "sens"))
    assert r.returncode == 2 and "--scheduler" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_version_and_help_describe_the_package():
    import gvlmodel

    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"gvlmodel {gvlmodel.__version__}"
    r = run("--help")
    assert r.returncode == 0 and "gvlmodel reproduce" in r.stdout and not r.stdout.rstrip().endswith(",")


def test_console_entry_point_returns_main_status_and_skips_the_exit_collection(monkeypatch):
    """The installed ``gvlmodel`` command is ``console_main``: ``main``'s exit status, then ``gc.freeze``
    (only there: ``main`` called from Python leaves the collector alone)."""
    import gc
    import tomllib
    from pathlib import Path

    from gvlmodel.workflow import cli

    calls = []
    monkeypatch.setattr(cli, "main", lambda argv=None: calls.append("main") or 3)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    assert cli.console_main() == 3
    assert calls == ["main", "freeze"]
    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["gvlmodel"] == "gvlmodel.workflow.cli:console_main"


def _probe(code, **env):
    import os

    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    environ.update(env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_the_public_api_is_imported_on_first_use():
    """``import gvlmodel`` loads neither NumPy nor numba (the command starts with only what it uses); every
    public name resolves, from the module it is documented in, and unknown names raise AttributeError."""
    out = _probe("import sys, gvlmodel; print('numpy' in sys.modules, 'numba' in sys.modules)")
    assert out == ["False", "False"]
    import gvlmodel
    from gvlmodel.model import simulate as sim_module

    assert gvlmodel.simulate is sim_module.simulate and gvlmodel.State.Z == 11
    assert all(getattr(gvlmodel, name) is not None for name in gvlmodel.__all__)
    assert set(gvlmodel.__all__) <= set(dir(gvlmodel))
    import pytest

    with pytest.raises(AttributeError, match="no_such_name"):
        gvlmodel.no_such_name


def test_the_command_runs_blas_on_one_thread_unless_told_otherwise():
    """The command's process sets ``OPENBLAS_NUM_THREADS=1`` before NumPy loads OpenBLAS (its threads would
    busy-wait beside the engine's); a value the user set is kept, and importing the CLI into a session that
    already has NumPy changes nothing."""
    code = "import os, gvlmodel.workflow.cli; print(os.environ.get('OPENBLAS_NUM_THREADS', 'unset'))"
    assert _probe(code) == ["1"]
    assert _probe(code, OPENBLAS_NUM_THREADS="3") == ["3"]
    assert _probe("import numpy; " + code) == ["unset"]
