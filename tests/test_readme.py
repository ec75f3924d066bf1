"""README.md and README.zh-CN.md list the same `lenet` commands, `make` targets and numbers, and what the
READMEs and docs/ write stays true: the commands and targets exist, every `lenet ...` line of a code block
parses, every flag named after a `lenet` command is one of its options, every sweep space in a TOML block is
one `lenet sweep` takes, every src/lenet/ path and lenet.x name exists, and every relative link, with its
#anchor, leads somewhere. The Chinese docs pages hold every number of the English ones.

Commands are read from the code only (spans and fenced blocks), never from prose, so that translating the
text changes nothing here while a command or target added to one README and not the other does.
"""

import argparse
import importlib
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import REPO
from lenet.cli import build_parser

READMES = {"en": REPO / "README.md", "zh-CN": REPO / "README.zh-CN.md"}
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`((?:[^`\n]|\n(?![ \t]*\n))+)`")  # a span may go on to the next line, not past a paragraph
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}


def read(name: str) -> str:
    return READMES[name].read_text(encoding="utf-8")


def code_pieces(markdown: str) -> list[str]:
    """Every line of every fenced block, and every inline code span outside them."""
    blocks = FENCE.findall(markdown)
    spans = [" ".join(span.split("\n")) for span in SPAN.findall(FENCE.sub("", markdown))]
    return [line for block in blocks for line in block.splitlines()] + spans


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


# Links, anchors, numbers and commands: what the READMEs and docs/ say must stay true of the repository.

DOCS = sorted((REPO / "docs").rglob("*.md"))
PAGES = [REPO / "README.md", REPO / "README.zh-CN.md", REPO / "BENCHMARKS.md", REPO / "RELIABILITY.md", *DOCS]
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")


def prose(markdown: str) -> str:
    """The text outside fenced blocks, code spans and HTML comments: where links and headings live."""
    return SPAN.sub("", FENCE.sub("", COMMENT.sub("", markdown)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", COMMENT.sub("", markdown))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(markdown: str) -> list[str]:
    return LINK.findall(prose(markdown))


def broken_links(page: Path, markdown: str | None = None) -> list[str]:
    """Each relative link of `page` (or of `markdown`, written in page's folder: a notebook's Markdown cells)
    whose file, or whose anchor in a Markdown file, does not exist."""
    problems = []
    for target in links(page.read_text(encoding="utf-8") if markdown is None else markdown):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:: not this test's business
            continue
        path_part, _, anchor = unquote(target).partition("#")
        file = (page.parent / path_part).resolve() if path_part else page
        if not file.exists():
            problems.append(f"{page.name}: {target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            problems.append(f"{page.name}: {target}: no heading #{anchor} in {file.name}")
    return problems


def numbers(markdown: str) -> set[str]:
    return set(NUMBER.findall(COMMENT.sub("", markdown)))  # a comment to the maintainers is no figure


def lenet_commands(markdown: str) -> list[list[str]]:
    """The words of every `lenet ...` command in the fenced blocks, prompts and VAR=value set-ups left off."""
    commands = []
    for block in FENCE.findall(markdown):
        for line in block.splitlines():
            line = re.sub(r"^\s*[\w-]+\$\s+", "", line)  # a "head$ " prompt
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True  # 10.0.0.1:6379 and folder:PATH are one word each
            try:
                words = list(lexer)
            except ValueError:
                continue  # not shell: a TOML or Python line with an unbalanced quote
            command: list[str] = []
            for word in [*words, ";"]:
                if word in SHELL_OPERATORS:
                    while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", command[0]):
                        command.pop(0)
                    if command[:1] == ["lenet"] and len(command) > 1:
                        commands.append(command[1:])
                    command = []
                else:
                    command.append(word)
    return commands


def spans_flags(markdown: str) -> list[tuple[str, str]]:
    """(subcommand, flag) for every --flag written after `lenet SUBCOMMAND` in a code span or block line."""
    found = []
    for piece in code_pieces(COMMENT.sub("", markdown)):
        piece = piece.replace("\\|", "/")  # a table cell's escaped | is no pipe
        for match in re.finditer(r"\blenet ([a-z][a-z-]*)\b([^;&|]*)", piece):
            found += [(match.group(1), flag) for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", match.group(2))]
    return found


def subcommand_options() -> dict[str, set[str]]:
    (subcommands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in subcommands.choices.items()}


def space_parser():
    from lenet.sweep.space import parse_space

    return parse_space


def test_the_checkers_read_what_a_page_writes():
    sample = "\n".join([
        "# lenet", "## The `fast` recipe: round 3", "## 数据（Data）", "## Results", "## Results",
        "See [a](docs/x.md#y), ![p](img.png \"t\"), [web](https://example.com), `[not](a-link.md)`.",
        "<!-- [nor](this.md), nor `lenet train --no-such-flag` -->",
        "```sh", "head$   RAY_AUTH_MODE=token lenet sweep s.toml --address 10.0.0.1:6379",
        "lenet train --recipe seed --name s0 && lenet compare runs/s0 runs/d0   # a comment", "make test", "```",
        "Text with 93.41% and 10,000 images on lenet_32x48 in 2026-11-29, and `lenet eval RUN", "--json`.",
    ])  # fmt: skip
    assert anchors(sample) == {"lenet", "the-fast-recipe-round-3", "数据data", "results", "results-1"}
    assert links(sample) == ["docs/x.md#y", "img.png", "https://example.com"]
    assert numbers("93.41% and 10,000 on lenet_32x48 in 2026-11-29; 1. <!-- 27 -->") == {
        "93.41", "10,000", "2026", "11", "29", "1"}  # fmt: skip
    assert lenet_commands(sample) == [
        ["sweep", "s.toml", "--address", "10.0.0.1:6379"], ["train", "--recipe", "seed", "--name", "s0"],
        ["compare", "runs/s0", "runs/d0"],
    ]  # fmt: skip
    flags = {("sweep", "--address"), ("train", "--recipe"), ("train", "--name"), ("eval", "--json")}
    assert set(spans_flags(sample)) == flags


def test_the_link_checker_finds_a_missing_file_and_a_missing_heading(tmp_path):
    page = "# A\n\n## Two words\n\n[ok](#two-words) [ok](b.md#b) [gone](c.md) [gone](b.md#no)\n"
    (tmp_path / "a.md").write_text(page)
    (tmp_path / "b.md").write_text("# B\n")
    assert broken_links(tmp_path / "a.md") == ["a.md: c.md: no such file", "a.md: b.md#no: no heading #no in b.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_the_readme_is_a_short_guide_that_points_to_the_docs():
    english = read("en")
    assert len(english.splitlines()) <= 250
    for page in ("docs/training.md", "docs/recipes.md", "docs/results.md", "docs/data.md", "docs/serving.md",
                 "docs/sweeps.md", "docs/architecture.md", "BENCHMARKS.md", "RELIABILITY.md"):  # fmt: skip
        assert f"]({page}" in english, f"README.md does not link {page}"
    assert links(read("zh-CN")).count("docs/images/report.png") == links(english).count("docs/images/report.png") == 1


@pytest.mark.parametrize("other", ["zh-CN"])
def test_every_number_of_the_english_readme_is_in_the_other(other):
    missing = numbers(read("en")) - numbers(read(other))
    assert not missing, f"README.{other}.md lacks {sorted(missing)}"


TRANSLATED = [(page, REPO / "docs" / "zh-CN" / page.name) for page in sorted((REPO / "docs").glob("*.md"))
              if (REPO / "docs" / "zh-CN" / page.name).exists()]  # fmt: skip


def test_the_chinese_docs_pages_are_there():
    assert {chinese.name for _, chinese in TRANSLATED} >= {
        "training.md", "recipes.md", "results.md", "data.md", "serving.md", "sweeps.md"}  # fmt: skip


@pytest.mark.parametrize(("english", "chinese"), TRANSLATED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_number_of_an_english_docs_page_is_in_its_chinese_one(english, chinese):
    missing = numbers(english.read_text(encoding="utf-8")) - numbers(chinese.read_text(encoding="utf-8"))
    assert not missing, f"{chinese.relative_to(REPO)} lacks {sorted(missing)}"


def module_paths(markdown: str) -> set[str]:
    """Every src/lenet/... path and dotted lenet.x.y name written in code (file names such as lenet.onnx and format
    names such as lenet.model.v1 left out)."""
    found = set()
    for piece in code_pieces(markdown):
        found |= set(re.findall(r"src/lenet/[\w/]*\w(?:\.py)?", piece))
        dotted = re.findall(r"(?<![\w./-])lenet(?:\.[A-Za-z_]\w*)+", piece)
        found |= {name for name in dotted if name.rsplit(".", 1)[1] not in FILE_SUFFIXES
                  and not re.fullmatch(r"v\d+", name.rsplit(".", 1)[1])}  # fmt: skip
    return found


FILE_SUFFIXES = {"py", "json", "onnx", "pt", "toml", "csv", "html", "png", "safetensors"}


def resolves(name: str) -> bool:
    if name.startswith("src/"):
        return (REPO / name).exists()
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes of it
        try:
            thing = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(thing, attribute):
                return False
            thing = getattr(thing, attribute)
        return True
    return False


@pytest.mark.parametrize("page", [*DOCS, REPO / "BENCHMARKS.md", REPO / "RELIABILITY.md"],
                         ids=lambda p: str(p.relative_to(REPO)))  # fmt: skip
def test_every_make_target_in_the_docs_is_in_the_makefile(page):
    assert make_targets(page.read_text(encoding="utf-8")) <= makefile_targets()


def test_the_module_checker_reads_names_and_paths():
    sample = "`lenet.data.images.load_image`, `src/lenet/models/lenet.py`, `lenet.onnx`, `pip install 'lenet[serve]'`"
    assert module_paths(sample) == {"lenet.data.images.load_image", "src/lenet/models/lenet.py"}
    assert resolves("lenet.data.images.load_image") and resolves("lenet.load") and resolves("src/lenet/data/")
    assert not resolves("lenet.data.images.no_such_name") and not resolves("src/lenet/recipes.py")


@pytest.mark.parametrize("page", [*READMES.values(), *DOCS, REPO / "BENCHMARKS.md", REPO / "RELIABILITY.md"],
                         ids=lambda p: str(p.relative_to(REPO)))  # fmt: skip
def test_every_module_path_and_name_in_the_docs_exists(page):
    missing = sorted(name for name in module_paths(page.read_text(encoding="utf-8")) if not resolves(name))
    assert not missing, f"{page.name} names what the package does not have: {missing}"


@pytest.mark.parametrize("page", [READMES["en"], READMES["zh-CN"], *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_lenet_command_in_a_code_block_parses(page):
    commands = lenet_commands(page.read_text(encoding="utf-8"))
    parser = build_parser()
    for words in commands:
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"{page.name}: `lenet {shlex.join(words)}` is not a command lenet takes")


@pytest.mark.parametrize("page", [READMES["en"], READMES["zh-CN"], *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_flag_written_after_a_lenet_command_exists(page):
    options = subcommand_options()
    unknown = [f"lenet {cmd} {flag}" for cmd, flag in spans_flags(page.read_text(encoding="utf-8"))
               if cmd in options and flag not in options[cmd]]  # fmt: skip
    assert not unknown, f"{page.name}: no such option: {unknown}"


@pytest.mark.parametrize("page", [READMES["en"], READMES["zh-CN"], *DOCS], ids=lambda p: str(p.relative_to(REPO)))
def test_every_sweep_space_in_a_toml_block_is_one_lenet_sweep_takes(page):
    parse_space = space_parser()
    blocks = re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    for block in blocks:
        parse_space(tomllib.loads(block), f"{page.name}: a TOML block")


# The tutorial notebook: what its cells name and link stays true, and its Chinese text points to the Chinese docs.

NOTEBOOK = REPO / "notebooks" / "lenet_tutorial.ipynb"
CJK = re.compile(r"[\u4e00-\u9fff]")
DOCS_PAGE = re.compile(r"docs/([\w-]+\.md)")  # docs/zh-CN/x.md is not one: [\w-]+ stops at the slash


def notebook_markdown(path: Path = NOTEBOOK) -> tuple[str, str]:
    """The notebook's Markdown cells, and the whole notebook as Markdown (each code cell a fenced block)."""
    import nbformat

    cells = nbformat.read(path, as_version=4).cells
    markdown = "\n\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
    whole = "\n\n".join(cell.source if cell.cell_type == "markdown" else f"```python\n{cell.source}\n```"
                         for cell in cells)  # fmt: skip
    return markdown, whole


def english_docs_named_in_chinese(markdown: str) -> list[str]:
    """docs/X.md named (linked or written) in a paragraph of Chinese text where docs/zh-CN/X.md exists; and
    docs/zh-CN/ pages named in an English paragraph."""
    wrong = []
    for paragraph in re.split(r"\n[ \t]*\n", markdown):
        text = re.sub(r"^#+ .*$", "", paragraph, flags=re.M)  # a heading is both languages
        if len(CJK.findall(text)) * 5 >= len(re.findall(r"[A-Za-z]", text)) > 0:  # Chinese, not English quoting a title
            wrong += [f"docs/{name}" for name in DOCS_PAGE.findall(paragraph)
                      if (REPO / "docs" / "zh-CN" / name).exists()]  # fmt: skip
        else:
            wrong += re.findall(r"docs/zh-CN/[\w-]+\.md", paragraph)
    return wrong


def test_the_language_checker_reads_paragraphs():
    sample = ("See [docs/results.md](../docs/results.md) and docs/architecture.md, as \"从头学pytorch\" does.\n\n"
              "测量结果见 [docs/results.md](../docs/results.md)、docs/zh-CN/recipes.md 和 docs/architecture.md（后者没有中文版，只有英文的）。\n\n"
              "## 1. Data / 数据\n\nEnglish, but docs/zh-CN/data.md.")  # fmt: skip
    assert english_docs_named_in_chinese(sample) == ["docs/results.md", "docs/results.md", "docs/zh-CN/data.md"]


def test_every_module_path_and_name_in_the_notebook_exists():
    _, whole = notebook_markdown()
    names = module_paths(whole)
    assert "src/lenet/training/recipes.py" in names and "lenet.training.engine.Step" in names  # the checker reads it
    missing = sorted(name for name in names if not resolves(name))
    assert not missing, f"the notebook names what the package does not have: {missing}"


def test_every_relative_link_of_the_notebook_resolves():
    markdown, _ = notebook_markdown()
    assert links(markdown) and broken_links(NOTEBOOK, markdown) == []


def test_the_notebooks_chinese_text_points_to_the_chinese_docs():
    markdown, _ = notebook_markdown()
    assert "../docs/zh-CN/results.md" in links(markdown)
    assert english_docs_named_in_chinese(markdown) == []


def test_make_notebook_installs_jupyterlab_and_opens_the_notebook_and_make_train_does_not():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    rules = dict(re.findall(r"^([\w$()./-]+):(?!=)([^\n]*\n(?:\t[^\n]*\n)*)", makefile, re.M))
    assert "notebook" in make_targets(read("en")) and "notebook" in make_targets(read("zh-CN"))
    assert "$(BIN)/jupyter lab notebooks/lenet_tutorial.ipynb" in rules["notebook"]
    assert ".[notebook]" in rules["$(VENV)/.notebook"] and "$(VENV)/.notebook" in rules["notebook"]
    for target in ("train", "install", "$(VENV)/.installed"):
        assert "notebook" not in rules[target] and "jupyter" not in rules[target]
    assert "jupyterlab" in "".join(re.findall(r'^notebook = \[.*\]$', (REPO / "pyproject.toml").read_text(), re.M))
