"""Provenance records: the commit's dirty flag, atomic writes, pruning of a command's stale outputs."""
import json
import subprocess
from pathlib import Path

import pytest

from gvlmodel.core.provenance import atomic_write_json, git_commit, provenance, prune_outputs

ROOT = Path(__file__).resolve().parents[1]


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    try:
        _git(tmp_path, "init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not available")
    (tmp_path / ".gitignore").write_text("results/\n")
    (tmp_path / "README.md").write_text("r\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.py").write_text("x = 1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_commit_is_dirty_with_tracked_changes_or_new_package_files_only(repo):
    pkg = repo / "pkg"
    clean = git_commit(pkg)
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (repo / "results").mkdir()
    (repo / "results" / "out.csv").write_text("ignored\n")
    (repo / "example_out").mkdir()  # a run's output folder in the checkout, outside the package
    (repo / "example_out" / "summary.json").write_text("{}\n")
    assert git_commit(pkg) == clean
    (pkg / "new_module.py").write_text("y = 2\n")  # would run, yet is in no commit
    assert git_commit(pkg) == clean + "-dirty"
    (pkg / "new_module.py").unlink()
    (repo / "README.md").write_text("edited\n")  # a tracked change anywhere
    assert git_commit(pkg) == clean + "-dirty"


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "a" / "r.json", {"k": 1})
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["r.json"]
    assert json.loads((tmp_path / "a" / "r.json").read_text()) == {"k": 1}


def test_prune_removes_only_the_commands_files_not_written_now(tmp_path):
    for name in ("a.csv", "b.csv", "notes.txt"):
        (tmp_path / name).write_text(name)
    assert prune_outputs(tmp_path, ["a.csv", "b.csv", "c.csv"], ["a.csv"]) == ["b.csv"]
    assert {p.name for p in tmp_path.iterdir()} == {"a.csv", "notes.txt"}


def test_seedless_record_says_the_run_is_deterministic():
    assert provenance({}, seed=None)["seed_note"].startswith("deterministic")
    rec = provenance({}, seed=0)
    assert rec["seed"] == 0 and "seed_note" not in rec


def test_a_second_writer_into_a_locked_folder_exits_2_and_a_killed_holder_releases_it(tmp_path):
    """Two runs into one --out must not mix files: the second is refused before it writes; the lock
    of a killed run is recovered by the next one (the kernel drops an flock with its process)."""
    import subprocess
    import sys

    from gvlmodel.workflow.cli import main
    from gvlmodel.core.errors import InputError
    from gvlmodel.core.provenance import LOCK_NAME, lock_outputs, release_outputs

    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gvlmodel.core.provenance import lock_outputs; "
         f"lock_outputs({str(out)!r}); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"another gvlmodel run \\(pid {holder.pid} "):
            lock_outputs(out)
        scenario = tmp_path / "s.toml"
        scenario.write_text('[cohort]\nsize = 2\nseed = 1\n[treatment]\nfollow_up_days = 60\n')
        assert main(["simulate", str(scenario), "--out", str(out), "--no-progress"]) == 2
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.kill()
        holder.wait()
    lock_outputs(out)  # recovered
    lock_outputs(out)  # re-entrant in one process
    release_outputs(out)
    assert main(["simulate", str(scenario), "--out", str(out), "--no-progress"]) == 0
    assert (out / "provenance.json").is_file() and not (out / LOCK_NAME).exists()  # released and removed


def _hold_lock(folder: Path):
    """Lock ``folder`` as another gvlmodel process would (a second open file description: flock conflicts
    with this process's own lock_outputs); returns the descriptor to close."""
    import fcntl
    import os

    from gvlmodel.core.provenance import LOCK_NAME

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, b"pid 1 on elsewhere\n", 0)
    return fd


def test_reproduce_discards_a_saved_study_only_under_the_lock(tmp_path):
    """A sensitivity step whose folder holds another study's evaluations, while another run writes there:
    refused before anything is removed (reproduce deleted the running study's samples, then hit the lock)."""
    import os

    from gvlmodel.core.errors import InputError
    from gvlmodel.core.provenance import abandon_outputs
    from gvlmodel.workflow.reproduce import Step, run_step

    out = tmp_path / "sensitivity_hess2005"
    fd = _hold_lock(out)
    try:
        (out / "study_state.json").write_text('{"model_digest": "another study"}')
        (out / "samples").mkdir()
        (out / "samples" / "sobol.npy").write_bytes(b"running study")
        step = Step("sensitivity_hess2005", "sensitivity", ROOT / "experiments" / "sensitivity_hess2005.toml", out)
        with pytest.raises(InputError, match="another gvlmodel run"):
            run_step(step, quick=True, refit=False, threads=None, log=lambda m: None)
        assert (out / "samples" / "sobol.npy").read_bytes() == b"running study"
        assert (out / "study_state.json").is_file()
    finally:
        abandon_outputs()
        os.close(fd)


def test_reproduce_locks_its_figure_folder(tmp_path):
    """A second reproduce writing figures into the same folder is refused before its first step (both ran
    and interleaved their figure files)."""
    import os
    import shutil

    from gvlmodel.core.errors import InputError
    from gvlmodel.core.provenance import abandon_outputs
    from gvlmodel.workflow.reproduce import reproduce

    root = tmp_path / "root"
    (root / "experiments").mkdir(parents=True)
    shutil.copy(ROOT / "experiments" / "example.toml", root / "experiments" / "example.toml")
    figures = tmp_path / "figures"
    fd = _hold_lock(figures)
    try:
        with pytest.raises(InputError, match=f"--figures {figures}: another gvlmodel run"):
            reproduce(root, tmp_path / "results", figures, quick=True, log=lambda m: None)
        assert not (tmp_path / "results" / "example").exists()  # no step ran
    finally:
        abandon_outputs()
        os.close(fd)


def test_taking_a_lock_removes_temporary_files_a_killed_run_left(tmp_path):
    from gvlmodel.core.provenance import lock_outputs, release_outputs

    out = tmp_path / "out"
    out.mkdir()
    (out / ".patients.csv.k2j4x.tmp").write_bytes(b"partial")
    (out / "patients.csv").write_text("kept")
    (out / "notes.tmp").write_text("not ours")  # not a hidden temporary file: left alone
    lock_outputs(out)
    release_outputs(out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.tmp", "patients.csv"]


def test_taking_a_lock_removes_temporary_files_in_subfolders_but_not_in_another_runs_folder(tmp_path):
    """A killed study leaves temporary files in samples/ and evaluations/<method>/ (they survived the next
    run); a subfolder with a lock file of its own is another run's output folder and is left alone."""
    from gvlmodel.core.provenance import LOCK_NAME, lock_outputs, release_outputs

    out = tmp_path / "out"
    (out / "samples").mkdir(parents=True)
    (out / "evaluations" / "sobol").mkdir(parents=True)
    (out / "samples" / ".sobol.npy.a1.tmp").write_bytes(b"partial")
    (out / "evaluations" / "sobol" / ".chunk_0003.npy.b2.tmp").write_bytes(b"partial")
    (out / "evaluations" / "sobol" / "chunk_0002.npy").write_bytes(b"kept")
    other = out / "step"
    other.mkdir()
    (other / LOCK_NAME).write_text("pid 1 on elsewhere\n")
    (other / ".patients.csv.c3.tmp").write_bytes(b"another run's")
    lock_outputs(out)
    release_outputs(out)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == ["evaluations/sobol/chunk_0002.npy", f"step/{LOCK_NAME}", "step/.patients.csv.c3.tmp"], left
