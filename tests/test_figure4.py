"""Figure 4 (immune window) draws from the small fixture of ``gvlmodel dynamics --quick``.

``tests/fixtures/results/dynamics/`` holds the outputs of
``gvlmodel dynamics experiments/dynamics.toml --quick`` that the figure reads
(6 x 6 basin grid of the state at the imatinib stop, 7 bifurcation points, 3 minimal-IM points
per profile; model v2 with the default table).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "figures" / "fig4_immune_window.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
NAMES = ("fig4_immune_window", "fig4_immune_window_detail")


def load_script():
    spec = importlib.util.spec_from_file_location("figures_fig4_immune_window", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_figure4_draws_from_fixtures(tmp_path, capsys):
    mod = load_script()
    out = tmp_path / "out"
    paths = [Path(p) for p in mod.main(["--results", str(FIXTURES), "--out", str(out)])]
    printed = capsys.readouterr().out
    for name in NAMES:
        for ext, magic in (("pdf", b"%PDF"), ("png", b"\x89PNG")):
            p = out / f"{name}.{ext}"
            assert p in paths, f"{p} not returned by draw()"
            assert p.is_file() and p.stat().st_size > 1000, f"{p} missing or empty"
            assert p.read_bytes()[:4] == magic
            assert str(p) in printed
    # atomic writes leave no temporary files behind
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("missing", ["phase_plane.npz", "bifurcation.csv", "min_im_duration.csv"])
def test_figure4_missing_input_names_file_and_command(missing, tmp_path):
    import shutil

    mod = load_script()
    results = tmp_path / "results"
    shutil.copytree(FIXTURES / "dynamics", results / "dynamics")
    (results / "dynamics" / missing).unlink()
    with pytest.raises(FileNotFoundError) as exc:
        mod.draw(results, tmp_path / "out")
    msg = str(exc.value).replace(os.sep, "/")
    assert f"dynamics/{missing}" in msg
    assert "gvlmodel dynamics experiments/dynamics.toml" in msg
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
