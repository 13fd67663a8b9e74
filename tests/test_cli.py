"""The CLI: the example runs and writes provenance; bad input exits 2 and writes nothing."""
import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "gvlmodel.cli", *args], capture_output=True, text=True)


def test_example_writes_trajectory_summary_and_provenance(tmp_path):
    out = tmp_path / "ex"
    r = run("example", "--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = (out / "trajectory.csv").read_text().splitlines()
    assert lines[0].startswith("time_days,dose_mg,bcr_abl_percent,X0")
    assert len(lines) == 1 + 61
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
