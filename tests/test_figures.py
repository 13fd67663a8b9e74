"""Every manuscript figure script draws from the small committed fixture results.

The fixtures under ``tests/fixtures/results/`` are truncated copies of real
model-v2 outputs (few patients, thinned trajectories, 30 posterior particles, 12
predictive draws per hypothesis, a trimmed ``report.json``), rebuilt by
``tests/fixtures/make_fixtures.py`` (its docstring has the commands).
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from gvlmodel.analysis import plotting as gp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "figures"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"

SCRIPTS = {
    "fig1_schematic": ["fig1_schematic"],
    "fig2_patients": ["fig2_patients"],
    "fig3_predictive": ["fig3_predictive"],
    "fig5_stopping": ["fig5_stopping"],
    "fig6_sensitivity": ["fig6_sensitivity", "fig6_sensitivity_detail"],
    "fig7_posterior": ["fig7_posterior", "fig7_corner"],
    "fig8_comparison": ["fig8_comparison"],
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"figures_{name}", FIGURES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check_outputs(paths, out: Path, names):
    paths = [Path(p) for p in paths]
    for name in names:
        for ext, magic in (("pdf", b"%PDF"), ("png", b"\x89PNG")):
            p = out / f"{name}.{ext}"
            assert p in paths, f"{p} not returned by draw()"
            assert p.is_file() and p.stat().st_size > 1000, f"{p} missing or empty"
            assert p.read_bytes()[:4] == magic
    # atomic writes leave no temporary files behind
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_figure_draws_from_fixtures(script, tmp_path):
    mod = load_script(script)
    out = tmp_path / "out"
    paths = mod.draw(FIXTURES, out)
    _check_outputs(paths, out, SCRIPTS[script])


def test_main_cli_arguments(tmp_path, capsys):
    mod = load_script("fig5_stopping")
    mod.main(["--results", str(FIXTURES), "--out", str(tmp_path)])
    assert (tmp_path / "fig5_stopping.pdf").is_file()
    assert "fig5_stopping.png" in capsys.readouterr().out


@pytest.mark.parametrize("script,missing,command", [
    ("fig2_patients", "hess2005/patients.csv", "gvlmodel simulate experiments/hess2005.toml"),
    ("fig3_predictive", "fit_hess2005/report.json", "gvlmodel fit experiments/fit_hess2005.toml"),
    ("fig5_stopping", "fit_hess2005/report.json", "gvlmodel fit experiments/fit_hess2005.toml"),
    ("fig7_posterior", "fit_hess2005/report.json", "gvlmodel fit experiments/fit_hess2005.toml"),
    ("fig8_comparison", "compare_hess2005/report.json", "gvlmodel compare experiments/compare_hess2005.toml"),
])
def test_missing_input_names_file_and_command(script, missing, command, tmp_path):
    mod = load_script(script)
    with pytest.raises(FileNotFoundError) as exc:
        mod.draw(tmp_path / "no_results", tmp_path / "out")
    msg = str(exc.value)
    assert missing in msg.replace(os.sep, "/")
    assert command in msg


def test_missing_input_cli_exits_with_message(tmp_path, capsys):
    mod = load_script("fig3_predictive")
    with pytest.raises(SystemExit) as exc:
        mod.main(["--results", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "gvlmodel fit" in capsys.readouterr().err


def test_fig2_picks_one_patient_per_outcome():
    mod = load_script("fig2_patients")
    patients = gp.read_table(FIXTURES / "hess2005" / "patients.csv", "x")
    picks = mod.pick_patients(patients, patients["patient_id"], 3)
    # the hess2005 cohort (seed 2005, best-supported set; none of its 44 patients stays in CMR after a stop):
    # the fixture holds patients 2, 37 and 0 (tests/fixtures/make_fixtures.py; the hand-built case below
    # covers every outcome class)
    assert picks == [(2, "lost"), (37, "never_cmr"), (0, "continued")]


def test_fig2_pick_order_covers_every_outcome():
    """One patient per class in the order durable, lost, lost without CMR, never in CMR, continued; then again."""
    mod = load_script("fig2_patients")
    # id: (reached_cmr, stopped, lost_cmr)
    cases = {7: (True, False, False), 3: (False, False, False), 5: (False, True, True), 4: (True, True, True),
             9: (True, True, False), 2: (True, True, False), 8: (True, True, True)}
    ids = sorted(cases)
    patients = {"patient_id": np.array(ids, dtype=float),
                **{k: np.array([str(cases[i][j]).lower() for i in ids]) for j, k in
                   enumerate(("reached_cmr", "stopped", "lost_cmr"))}}
    picks = mod.pick_patients(patients, ids, 7)
    assert picks == [(2, "durable"), (4, "lost"), (5, "lost_never_cmr"), (3, "never_cmr"), (7, "continued"),
                     (9, "durable"), (8, "lost")]
    assert mod.pick_patients(patients, [3, 7, 9], 2) == [(9, "durable"), (3, "never_cmr")]


def test_save_figure_atomic_and_replaces(tmp_path):
    with gp.use_style():
        fig = gp.new_figure()
        fig.add_subplot().plot([0, 1], [0, 1])
        first = gp.save_figure(fig, tmp_path, "x", close=False)
        second = gp.save_figure(fig, tmp_path, "x")
    assert first == second == [tmp_path / "x.pdf", tmp_path / "x.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pdf", "x.png"]


def test_style_is_scoped_and_legible():
    before = matplotlib.rcParams["font.size"]
    with gp.use_style():
        assert matplotlib.rcParams["font.size"] >= 7
        assert matplotlib.rcParams["xtick.labelsize"] >= 7
        assert matplotlib.rcParams["legend.fontsize"] >= 7
    assert matplotlib.rcParams["font.size"] == before


def test_palette_fixed_and_distinct():
    colors = [gp.variant_color(v) for v in ("H0", "H1", "H2")]
    assert len(set(colors)) == 3
    assert gp.SETTING_COLORS["transplanted"] != gp.SETTING_COLORS["non_transplanted"]
    # further hypotheses get a fixed fallback colour, distinct from H0-H2 and from each other
    extra = [gp.variant_color(v) for v in ("H3", "H4")]
    assert extra == [gp.variant_color(v) for v in ("H3", "H4")] and len(set(extra)) == 2
    assert not set(extra) & set(colors) and set(extra) <= set(gp.EXTRA_VARIANT_COLORS)


def test_read_table_parses_numpy_reprs(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,weight,s\n1,np.float64(0.25),x\n,np.float64(0.75),y\n")
    t = gp.read_table(p, "cmd")
    assert np.isnan(t["a"][1]) and t["a"][0] == 1.0
    np.testing.assert_allclose(t["weight"], [0.25, 0.75])
    assert list(t["s"]) == ["x", "y"]


def test_weighted_helpers():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    w = np.array([0.0, 0.0, 1.0, 1.0])
    assert 2.0 <= gp.weighted_quantile(x, 0.5, w) <= 3.0
    grid, dens = gp.weighted_kde(np.random.default_rng(1).uniform(0, 1, 400), bounds=(0.0, 1.0))
    area = float(np.sum(np.diff(grid) * (dens[1:] + dens[:-1]) / 2.0))
    assert abs(area - 1.0) < 0.05
    assert dens[0] > 0.5  # reflection keeps the density up at the bound


def test_fixture_report_has_what_figures_read():
    r = json.loads((FIXTURES / "fit_hess2005" / "report.json").read_text())
    assert set(r["predictive"]) == {"H0", "H1", "H2"}
    assert {"transplanted", "non_transplanted"} <= set(r["answers"]["result"]["tfr_by_im_days"])


def test_plot_helpers_return_their_axes(tmp_path):
    with gp.use_style():
        fig = gp.new_figure(gp.DOUBLE_COLUMN)
        axes = fig.subplots(1, 3)
        assert gp.width_ratio_bars(axes[0], ["a", "b"], {"H0": [0.3, 0.9], "H2": [0.6, np.nan]}) is axes[0]
        assert gp.violin(axes[1], 0.0, [1.0, 1.0, 1.0], gp.variant_color("H1")) is axes[1]
        assert gp.interval_bar(axes[1], 1.0, 0.5, 0.2, 0.8, "k") is axes[1]
        assert gp.shade_dose(axes[2], [0, 1, 2, 3], [400, 400, 0, 600]) is axes[2]
        assert gp.response_levels(axes[2]) is axes[2]
        n_lines = len(axes[0].lines)
        # a pool that never reaches one cell (no resistant subclone) is not drawn
        assert gp.plot_stem_cells(axes[0], [0, 1, 2], {"Q": [10.0, 5.0, 0.0], "Y0": [3.0, 2.0, 1.0],
                                                       "R0": [0.0, 0.5, 0.0]}) is axes[0]
        assert [ln.get_label() for ln in axes[0].lines[n_lines:]] == ["quiescent LSCs Q", "cycling LSCs Y0"]
        assert axes[0].get_yscale() == "log"
        paths = gp.save_figure(fig, tmp_path, "helpers")
    assert all(p.stat().st_size > 0 for p in paths)


def test_experiment_command_follows_the_config_kind(tmp_path):
    """Figure inputs are named by experiment; the command comes from the config's kind, not a copied string."""
    folder, command = gp.experiment(tmp_path, "sensitivity_hess2005")
    assert folder == tmp_path / "sensitivity_hess2005"
    assert command == (f"gvlmodel sensitivity experiments/sensitivity_hess2005.toml "
                       f"--out {(tmp_path / 'sensitivity_hess2005').as_posix()}")
    assert gp.experiment(tmp_path, "no_such_experiment")[1] == "gvlmodel reproduce"


@pytest.fixture
def captured(monkeypatch):
    """The figures a script saves, kept open (``gp.save_figure`` replaced for the test)."""
    figs = {}

    def keep(fig, out_dir, name, **kwargs):
        figs[name] = fig
        return []

    monkeypatch.setattr(gp, "save_figure", keep)
    return figs


def _legend_texts(fig) -> list[str]:
    """Every legend entry of a figure, its subfigures' and its axes'."""
    out = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    for sub in getattr(fig, "subfigs", []):
        out += _legend_texts(sub)
    if fig is getattr(fig, "figure", fig):
        out += [t.get_text() for ax in fig.get_axes() if ax.get_legend() for t in ax.get_legend().get_texts()]
    return out


def test_fig5_hess_medians_are_two_markers_and_the_safe_stop_is_marked(tmp_path, captured):
    import shutil

    from gvlmodel.clinical.summary import first_crossing

    res = tmp_path / "results"
    shutil.copytree(FIXTURES / "fit_hess2005", res / "fit_hess2005")
    path = res / "fit_hess2005" / "report.json"
    report = json.loads(path.read_text())
    rows = report["answers"]["result"]["tfr_by_im_days"]["transplanted"]
    for r, m in zip(rows, np.linspace(0.1, 0.7, len(rows))):  # a curve that crosses 50 %
        r["median"], r["q05"], r["q95"] = float(m), float(m) * 0.5, min(1.0, float(m) + 0.2)
    path.write_text(json.dumps(report))
    mod = load_script("fig5_stopping")
    mod.draw(res, tmp_path / "out")
    fig = captured["fig5_stopping"]
    ax = fig.get_axes()[0]
    assert not ax.containers  # no error bar anywhere
    texts = _legend_texts(fig)
    assert sum("Hess 2005 median before stop" in t for t in texts) == 2
    assert any("151 days" in t for t in texts) and any("269 days" in t for t in texts)
    t50 = first_crossing([r["stop_after_days"] for r in rows], [r["median"] for r in rows], 0.5)
    assert any(f"from {t50 / gp.DAYS_PER_MONTH:.1f} months" in t for t in texts), texts
    assert any("non-transplanted" in t and "not reached" in t for t in texts)
    vertical = [ln for ln in ax.lines if len(set(ln.get_xdata())) == 1 and len(ln.get_xdata()) == 2]
    assert any(np.isclose(ln.get_xdata()[0], t50 / gp.DAYS_PER_MONTH) for ln in vertical)


def test_fig4_legend_lists_only_outcomes_that_occur(tmp_path, captured):
    import shutil

    res = tmp_path / "results"
    shutil.copytree(FIXTURES / "dynamics", res / "dynamics")
    npz = res / "dynamics" / "phase_plane.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    for k in arrays:
        if k.endswith("_basin"):
            arrays[k] = np.where(arrays[k] == 1, 2, arrays[k])  # no start state ends immune-controlled
    np.savez(npz, **arrays)
    spec = importlib.util.spec_from_file_location("fig4", FIGURES / "fig4_immune_window.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.basin_classes_present(arrays, ["transplanted", "non_transplanted"]) == [0, 2]
    mod.draw(res, tmp_path / "out")
    texts = _legend_texts(captured["fig4_immune_window"])
    assert "eradicated" in texts and "relapse" in texts
    assert not any("controlled" in t and "immune" in t for t in texts) and not any("none" in t for t in texts)


def test_every_table_parameter_has_a_symbol_and_fig6_shows_no_code_names(captured, tmp_path):
    from gvlmodel.model.parameters import PARAMETER_TABLE

    assert set(gp.PARAMETER_SYMBOLS) == set(PARAMETER_TABLE)
    assert len(set(gp.PARAMETER_SYMBOLS.values())) == len(gp.PARAMETER_SYMBOLS)
    assert gp.factor_label("log10_z_kill") == "log$_{10}$ $z_{kill}$"
    assert gp.factor_label("sd_im_kill_lsc", describe=True) == "SD $k_{IM}$: between-patient SD of ln $k_{IM}$"
    mod = load_script("fig6_sensitivity")
    mod.draw(FIXTURES, tmp_path / "out")
    fig = captured["fig6_sensitivity"]
    ind = json.loads((FIXTURES / "sensitivity_hess2005" / "indices.json").read_text())
    code_names = set(ind["problem"]["names"]) | {mod.base_name(k) for k in ind["problem"]["names"]}
    shown = _legend_texts(fig) + [t.get_text() for ax in fig.get_axes() for t in ax.get_yticklabels()] + \
        [t.get_text() for ax in fig.get_axes() for t in ax.texts]
    assert not [t for t in shown if any(name in t for name in code_names)]
    # panel (b): every one of the top three points by mu* is labelled, in every analysed output
    morris_axes = [ax for ax in fig.get_axes() if ax.get_xlabel().startswith("μ*")]
    assert len(morris_axes) == sum(ind["morris"][o]["status"] == "ok" for o in ind["outputs"])
    for ax in morris_axes:
        labels = [t for t in ax.texts if t.get_text() and t.get_text() != "b"]  # not the panel letter
        assert len(labels) == mod.N_TOP


def test_fig7_labels_use_the_equations_symbols_and_the_tables_units(captured, tmp_path):
    """fig7 writes each fitted quantity as the other figures do (shared helpers), never as its code name."""
    from gvlmodel.model.parameters import PARAMETER_TABLE

    assert gp.factor_axis_label("log10_z_kill") == f"log$_{{10}}$ $z_{{kill}}$ ({PARAMETER_TABLE['z_kill'].unit})"
    assert gp.factor_axis_label("sd_im_kill_lsc") == "SD of ln $k_{IM}$ (ln units)"
    assert gp.factor_axis_label("stop_uptake") == "stop uptake (fraction)"
    assert gp.factor_axis_label("new_thing", "cells") == "new_thing (cells)"  # unknown: as is, with the given unit
    assert gp.parameter_unit("z_half") == PARAMETER_TABLE["z_half"].unit
    mod = load_script("fig7_posterior")
    mod.draw(FIXTURES, tmp_path / "out")
    keys = {k for v in ("H0", "H1", "H2")
            for k in (FIXTURES / "fit_hess2005" / f"posterior_{v}.csv").read_text().splitlines()[0].split(",")}
    code_names = {k.removeprefix("log10_").removeprefix("sd_") for k in keys - {"weight"}}
    for name in ("fig7_posterior", "fig7_corner"):
        fig = captured[name]
        axes = fig.get_axes()
        shown = [ax.get_xlabel() for ax in axes] + [ax.get_ylabel() for ax in axes] + \
            [t.get_text() for ax in axes for t in ax.get_xticklabels()]
        assert [t for t in shown if t]
        assert not [t for t in shown if any(n in t for n in code_names)], name
        if name == "fig7_posterior":  # every fitted table parameter in fig6's notation, not a second one
            table = code_names & set(PARAMETER_TABLE)
            assert {b for b in table if any(gp.PARAMETER_SYMBOLS[b] in t for t in shown)} == table


def test_fig8_without_refits_draws_panels_b_and_c_and_says_why(tmp_path):
    """`gvlmodel reproduce` without --refit runs compare without the robustness refits: fig8 still draws,
    and says how to get panel (a)."""
    import json
    import shutil

    res = tmp_path / "results"
    shutil.copytree(FIXTURES / "compare_hess2005", res / "compare_hess2005")
    rep = json.loads((res / "compare_hess2005" / "report.json").read_text())
    rep["robustness"] = []
    (res / "compare_hess2005" / "report.json").write_text(json.dumps(rep))
    mod = load_script("fig8_comparison")
    out = tmp_path / "out"
    _check_outputs(mod.draw(res, out), out, ["fig8_comparison"])
