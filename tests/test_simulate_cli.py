"""`gvlmodel simulate`: every example scenario runs; each class of bad input exits 2 and writes nothing."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "experiments").glob("*.toml"))
SCENARIOS = [p for p in EXAMPLES if p.read_text().lstrip().startswith("#") and "[cohort]" in p.read_text()
             and "[study]" not in p.read_text()]  # sensitivity studies have a [cohort] table too


def run(*args):
    return subprocess.run([sys.executable, "-m", "gvlmodel.workflow.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_the_three_example_scenarios_exist():
    names = {p.stem for p in SCENARIOS}
    assert {"hess2005", "nontransplanted_short", "continuous_diagnosis"} <= names


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_example_scenario_runs_and_writes_outputs(scenario, tmp_path):
    out = tmp_path / scenario.stem
    r = run("simulate", str(scenario), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    header = (out / "patients.csv").read_text().splitlines()[0].split(",")
    for col in ("patient_id", "transplant", "start", "relapse_type", "reached_cmr", "days_to_cmr", "stopped",
                "days_on_im_at_stop", "lost_cmr", "days_stop_to_loss", "eradicated", "solver_status"):
        assert col in header
    traj = (out / "trajectories.csv").read_text().splitlines()[0].split(",")
    for col in ("time_days", "patient_id", "bcr_abl_percent", "Z", "Y0", "Q", "dose_mg"):
        assert col in traj
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_solver_failures"] == 0
    assert summary["rates"]["reached_cmr"]["ci95"] is not None
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["seed"] == prov["config"]["cohort"]["seed"] and prov["git_commit"]


def test_rerun_into_the_same_folder_leaves_no_stale_output(tmp_path):
    """A run without trajectories must not leave the previous run's trajectories.csv
    beside its own provenance; files the command does not own are left alone."""
    src = (ROOT / "experiments" / "hess2005.toml").read_text()
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(src)
    second.write_text(src.replace('trajectories = "all"', 'trajectories = "none"').replace("seed = 2005", "seed = 0"))
    out = tmp_path / "out"
    assert run("simulate", str(first), "--out", str(out), "--no-progress").returncode == 0
    (out / "my_notes.txt").write_text("kept")
    assert (out / "trajectories.csv").is_file()
    r = run("simulate", str(second), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert not (out / "trajectories.csv").exists()
    assert {p.name for p in out.iterdir()} == {"patients.csv", "summary.json", "provenance.json", "my_notes.txt"}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["seed"] == 0 and prov["resolved"]["cohort"]["relapse_ranges"]


BAD = {
    "unknown_key": ('[cohort]\nsize = 5\nseed = 1\ncolour = "red"\n', "colour"),
    "unknown_table": ('[cohort]\nsize = 5\nseed = 1\n[plots]\nx = 1\n', "plots"),
    "wrong_type": ('[cohort]\nsize = "five"\nseed = 1\n', "cohort.size"),
    "out_of_range": ('[cohort]\nsize = 5\nseed = 1\n[treatment]\ndose_mg = 5000\n', "treatment.dose_mg"),
    "unknown_parameter": ('[cohort]\nsize = 5\nseed = 1\n[parameters]\nz_kil = 1e-6\n', "z_kil"),
    "negative_parameter": ('[cohort]\nsize = 5\nseed = 1\n[parameters]\nd0 = -1\n', "d0"),
    "unknown_stop_rule": ('[cohort]\nsize = 5\nseed = 1\n[treatment]\nstop = "sometimes"\n', "treatment.stop"),
    "unknown_set": ('[cohort]\nsize = 5\nseed = 1\n[parameters]\nset = "nope"\n', "set"),
    "missing_seed": ('[cohort]\nsize = 5\n', "seed"),
    "bad_variant": ('[cohort]\nsize = 5\nseed = 1\n[parameters]\nvariant = "H9"\n', "[parameters] variant"),
    "beyond_bounds": ('[cohort]\nsize = 5\nseed = 1\n[parameters]\nim_kill_lsc = 1e300\n', "im_kill_lsc"),
    "too_fine_grid": ('[cohort]\nsize = 5\nseed = 1\n[output]\ntime_step_days = 1e-7\n', "output.time_step_days"),
    "too_many_trajectories": ('[cohort]\nsize = 5\nseed = 1\n[output]\ntrajectories = 100\n', "output.trajectories"),
    "trajectory_id_outside": ('[cohort]\nsize = 5\nseed = 1\n[output]\ntrajectories = [0, 5]\n', "output.trajectories"),
    "stop_rule_extra_key": ('[cohort]\nsize = 5\nseed = 1\n[treatment]\nstop = { after_days = 365, foo = 3 }\n',
                            "unexpected key(s) ['foo']"),
    "ranges_not_a_table": ('[cohort]\nsize = 5\nseed = 1\nrelapse_ranges = 5\n', "cohort.relapse_ranges"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_scenario_exits_2_names_the_key_and_writes_nothing(case, tmp_path):
    text, needle = BAD[case]
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    r = run("simulate", str(cfg), "--out", str(out))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr and "error" in r.stderr
    assert r.stderr.count("\n") <= 2, r.stderr  # one message, no traceback
    assert not out.exists()


def test_failed_solves_are_written_per_patient_and_exit_1(tmp_path):
    """A solver failure is data (per patient, counted in the summary), and the command says so by exit 1."""
    src = (ROOT / "experiments" / "hess2005.toml").read_text().replace("size = ", "size = 40 #", 1)
    cfg = tmp_path / "few_steps.toml"
    cfg.write_text(src + "\n[solver]\nmax_steps = 300\n")
    out = tmp_path / "out"
    r = run("simulate", str(cfg), "--out", str(out), "--no-progress")
    assert r.returncode == 1, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    n_failed = summary["n_solver_failures"]
    assert 0 < n_failed and f"{n_failed} of 40 patients' solves failed" in r.stderr
    rows = (out / "patients.csv").read_text().splitlines()
    status = rows[0].split(",").index("solver_status")
    assert len(rows) == 41 and sum(row.split(",")[status] != "0" for row in rows[1:]) == n_failed
    assert (out / "provenance.json").is_file()


def test_empty_out_is_refused_before_anything_runs(tmp_path):
    r = run("simulate", str(ROOT / "experiments" / "hess2005.toml"), "--out", "", "--no-progress")
    assert r.returncode == 2 and "--out: empty" in r.stderr and not (ROOT / "patients.csv").exists()


def test_interrupted_write_leaves_no_provenance_of_an_earlier_run(tmp_path, monkeypatch):
    """provenance.json is written last and removed before the first write: it marks a complete folder."""
    from gvlmodel.clinical import scenario as sc

    s = sc.load_scenario(ROOT / "experiments" / "hess2005.toml")
    out = tmp_path / "out"
    sc.write_results(s, s.run(threads=1, progress=False), out)
    assert (out / "provenance.json").is_file()
    real = sc.atomic_write_json

    def interrupted(path, data):
        if path.name == "summary.json":
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(sc, "atomic_write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sc.write_results(s, s.run(threads=1, progress=False), out)
    assert (out / "patients.csv").is_file() and not (out / "provenance.json").exists()


def test_a_run_too_big_for_memory_exits_2_before_running_or_writing(tmp_path, capsys):
    """100,000 patients with every trajectory at 0.1-day steps (~TBs of text) is refused at once,
    with the estimate and what to reduce (run in parts its memory fits, its tables do not fit on the
    disk); an ordinary run's estimate is small."""
    from gvlmodel.workflow.cli import main
    from gvlmodel.clinical.scenario import load_scenario

    big = tmp_path / "big.toml"
    big.write_text('[cohort]\nsize = 100000\nseed = 1\n[output]\ntrajectories = "all"\ntime_step_days = 0.1\n')
    out = tmp_path / "out"
    assert main(["simulate", str(big), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert ("GiB of memory" in err or "GiB of tables" in err) and "[output] trajectories" in err
    assert not out.exists()
    small = tmp_path / "small.toml"
    small.write_text('[cohort]\nsize = 1000\nseed = 1\n')
    sc = load_scenario(small)
    assert sc.memory_estimate()["total"] < 2 ** 30
    sc.check_resources(available=64 * 2 ** 30)
    with pytest.raises(Exception, match="GiB of memory"):
        sc.check_resources(available=2 ** 20)
    with pytest.raises(Exception, match="GiB of memory.*trajectories"):  # all at once it does not fit
        load_scenario(big).check_resources(available=64 * 2 ** 30, chunk=None)
