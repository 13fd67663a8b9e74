"""Documentation generated from code stays in step with it."""
from pathlib import Path

from gvlmodel.model.parameters import table_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_parameter_table_is_the_table_in_code():
    """README's parameter table is `table_markdown()` verbatim (regenerate it there after editing the table)."""
    assert table_markdown() in README.read_text(encoding="utf-8")


def test_every_public_name_is_documented_in_the_readme():
    import gvlmodel

    text = README.read_text(encoding="utf-8")
    missing = [n for n in gvlmodel.__all__ if f"`{n}`" not in text]
    assert not missing, f"exported but not in README.md: {missing}"
