"""README.md and README.zh-CN.md list the same `lenet` commands and `make` targets, and those exist.

Read from the code only (spans and fenced blocks), never from prose, so that translating the
text changes nothing here while a command or target added to one README and not the other does.
"""

import argparse
import re
import shlex

import pytest

from conftest import REPO
from lenet.cli import build_parser

READMES = {"en": REPO / "README.md", "zh-CN": REPO / "README.zh-CN.md"}
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}


def read(name: str) -> str:
    return READMES[name].read_text(encoding="utf-8")


def code_pieces(markdown: str) -> list[str]:
    """Every line of every fenced block, and every inline code span outside them."""
    blocks = FENCE.findall(markdown)
    return [line for block in blocks for line in block.splitlines()] + SPAN.findall(FENCE.sub("", markdown))


def command_table(markdown: str) -> list[str]:
    """The subcommands of the table rows whose first cell is a `lenet COMMAND ...` span, in order."""
    found = []
    for line in markdown.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        first_cell = re.split(r"(?<!\\)\|", line.strip())[1].strip()  # a \| inside a cell is no column break
        match = re.fullmatch(r"`lenet ([a-z][a-z-]*)\b[^`]*`.*", first_cell)
        if match:
            found.append(match.group(1))
    return found


def make_targets(markdown: str) -> set[str]:
    """The targets of every `make ...` command in the code: `make TORCH=torch train` names train."""
    targets = set()
    for piece in code_pieces(markdown):
        if re.search(r"\bmake\b", piece):
            words = list(shlex.shlex(piece, posix=True, punctuation_chars=True))  # '#' starts a comment
            for start, word in enumerate(words):
                if word == "make" and (start == 0 or words[start - 1] in SHELL_OPERATORS):
                    for arg in words[start + 1 :]:
                        if arg in SHELL_OPERATORS:
                            break
                        if "=" not in arg and not arg.startswith("-"):
                            targets.add(arg)
    return targets


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, re.M))


def cli_commands() -> set[str]:
    (subcommands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(subcommands.choices)


def test_the_parsers_read_what_a_readme_writes():
    sample = "\n".join([
        "| command | what |", "| --- | --- |",
        "| `lenet train [--recipe default\\|seed]` | train |", "| `lenet models` | list |",
        "| `lenet` | the model, not a command |",
        "Prose that says make the data is not a command; `make TORCH=torch train` is.",
        "```sh", 'make test ARGS="--lf -x"   # a comment: make nothing', "make install && make bench-serve RUN=r", "```",
    ])  # fmt: skip
    assert command_table(sample) == ["train", "models"]
    assert make_targets(sample) == {"train", "test", "install", "bench-serve"}


def test_the_english_command_table_is_the_command_line():
    assert set(command_table(read("en"))) == cli_commands()


@pytest.mark.parametrize("other", ["zh-CN"])
def test_both_readmes_list_the_same_commands(other):
    assert command_table(read(other)) == command_table(read("en"))


@pytest.mark.parametrize("other", ["zh-CN"])
def test_both_readmes_name_the_same_make_targets(other):
    english = make_targets(read("en"))
    assert {"train", "test"} <= english
    assert make_targets(read(other)) == english
    assert english <= makefile_targets(), f"not in the Makefile: {english - makefile_targets()}"


def test_each_readme_links_the_other_near_its_top_and_both_point_to_the_notebook():
    english, chinese = read("en"), read("zh-CN")
    assert "(README.zh-CN.md)" in "\n".join(english.splitlines()[:8])
    assert "(README.md)" in "\n".join(chinese.splitlines()[:8])
    for text in (english, chinese):
        assert "notebooks/lenet_tutorial.ipynb" in text
        assert "lenet[notebook]" in text
