"""MkDocs hook: generate the pages that come from the code, before the files are collected.

Written into ``docs/generated/`` (git-ignored), each from one source: the parameter table
(``gvlmodel.model.parameters.table_markdown``), the equations (the ``.. math::`` block of the
``gvlmodel.model.model`` docstring), the data provenance (``gvlmodel/data/README.md``), the CLI
reference (``gvlmodel.workflow.cli.build_parser``), the figure gallery (``figures/gallery/*.png``) and the
manuscript numbers (``results/numbers.md`` if ``gvlmodel reproduce`` has written it, else how to
generate it and the macro naming scheme of ``gvlmodel.analysis.numbers``: the build never runs experiments).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GEN = DOCS / "generated"


def _write(name: str, text: str) -> None:
    path = GEN / name
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # unchanged files keep their mtime
        path.write_text(text, encoding="utf-8")


def _equations() -> str:
    import gvlmodel.model.model as model

    doc = model.__doc__
    m = re.search(r"\.\. math::\n\n(.*?)\n\n", doc, re.S)
    if m is None:
        raise RuntimeError("gvlmodel.model.model's docstring has no '.. math::' block")
    body = "\n".join(line.strip() for line in m.group(1).splitlines())
    intro = doc[: m.start()].strip()
    intro = re.sub(r":func:`([^`]+)`", r"`\1`", intro)
    return (intro + "\n\n" + "$$\n\\begin{aligned}\n" + body + "\n\\end{aligned}\n$$\n")


def _cli() -> str:
    from gvlmodel.workflow.cli import build_parser

    parser = build_parser()
    out = ["# Command-line reference", "", "Generated from the parsers of `gvlmodel.workflow.cli`.", "", "```text",
           parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        out += [f"## `gvlmodel {name}`", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _gallery() -> str:
    src = ROOT / "figures" / "gallery"
    dst = GEN / "gallery"
    dst.mkdir(exist_ok=True)
    out = ["# Figure gallery", "",
           "The figures as `gvlmodel reproduce` draws them from the shipped parameter sets "
           "(`figures/gallery/`; scripts in `figures/`, described in `figures/README.md`).", ""]
    for png in sorted(src.glob("*.png")):
        shutil.copy2(png, dst / png.name)
        out += [f"## {png.stem}", "", f"![{png.stem}](gallery/{png.name})", ""]
    return "\n".join(out)


def _numbers() -> str:
    made = ROOT / "results" / "numbers.md"
    if made.is_file():
        return made.read_text(encoding="utf-8")
    from gvlmodel.analysis.numbers import SCHEME

    return "\n".join([
        "# Manuscript numbers", "",
        "Every number a manuscript quotes is generated from the saved results, never typed by hand. "
        "`gvlmodel reproduce` writes them, after the experiments and figures, as `results/numbers.json`, "
        "LaTeX macros `results/numbers.tex` (`\\input{numbers.tex}`, then `\\gvlFitProbHTwo` in the text) "
        "and a table `results/numbers.md`: per number its name, macro, value, unit, interval (with its "
        "kind: credible, posterior predictive, exact binomial, Monte Carlo, bootstrap or interquartile), "
        "description and the result file it was read from. From existing results alone:", "",
        "```bash", "python -c \"from gvlmodel.analysis.numbers import write_numbers; write_numbers('results')\"", "```", "",
        "This page shows that table when the documentation is built in a checkout where "
        "`results/numbers.md` exists; this build found none.", "", "## Macro names", "", SCHEME])


def on_pre_build(config, **kwargs):
    from gvlmodel.model.parameters import table_markdown

    GEN.mkdir(exist_ok=True)
    _write("parameters.md", "# Parameter table\n\nGenerated from `gvlmodel.model.parameters.PARAMETER_TABLE`: every "
           "parameter with its value, unit, bounds, scale and source. The same table feeds the model, the fit "
           "bounds, the sensitivity problem and the figure captions.\n\n" + table_markdown() + "\n")
    _write("equations.md", "# Equations\n\nGenerated from the docstring of `gvlmodel.model.model`, where the compiled "
           "right-hand side is written.\n\n" + _equations())
    data = (ROOT / "gvlmodel" / "data" / "README.md").read_text(encoding="utf-8")
    _write("data.md", data.replace("# Calibration data shipped with gvlmodel", "# Data and provenance", 1))
    _write("cli.md", _cli())
    _write("gallery.md", _gallery())
    _write("numbers.md", _numbers())
