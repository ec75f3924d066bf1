"""benchmarks/sections.py: the generated sections of BENCHMARKS.md and RELIABILITY.md."""

import pytest

from benchmarks.sections import SectionError, markers, read_section, write_section


def test_a_section_is_replaced_and_nothing_else(tmp_path):
    doc = tmp_path / "DOC.md"
    begin, end = markers("speed")
    doc.write_text(f"# Title\n\nbefore\n\n{begin}\nold table\n{end}\n\nafter\n")
    write_section(doc, "speed", "| new | table |\n")
    assert doc.read_text() == f"# Title\n\nbefore\n\n{begin}\n| new | table |\n{end}\n\nafter\n"
    assert read_section(doc, "speed") == "| new | table |\n"


def test_a_missing_section_is_appended_with_its_markers(tmp_path):
    doc = tmp_path / "DOC.md"
    doc.write_text("# Title\n")
    write_section(doc, "fuzz", "rows")
    write_section(doc, "fuzz", "other rows")  # the second write finds the first one's markers
    assert doc.read_text() == f"# Title\n\n{markers('fuzz')[0]}\nother rows\n{markers('fuzz')[1]}\n"
    assert read_section(doc, "other") is None and read_section(tmp_path / "none.md", "fuzz") is None


@pytest.mark.parametrize("broken", ["begin only", "end first", "twice"])
def test_damaged_markers_are_refused_and_the_file_kept(tmp_path, broken):
    begin, end = markers("speed")
    text = {"begin only": f"{begin}\nx\n", "end first": f"{end}\nx\n{begin}\n",
            "twice": f"{begin}\na\n{end}\n{begin}\nb\n{end}\n"}[broken]  # fmt: skip
    doc = tmp_path / "DOC.md"
    doc.write_text(text)
    with pytest.raises(SectionError, match="one begin marker"):
        write_section(doc, "speed", "new")
    assert doc.read_text() == text
