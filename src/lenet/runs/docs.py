"""docs/run-format.md (and its Chinese twin), written from the schemas: what each file of a run holds,
so that others can read runs without lenet. `python -m lenet.runs.docs` writes both; a test fails when
either is stale."""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from lenet.core.files import write_text
from lenet.runs.checkpoint import CheckpointMetadata
from lenet.runs.config import ConfigRecord, DataRecord, TeacherRecord
from lenet.runs.exports import ExportEntry, ExportRecord
from lenet.runs.metrics import EpochMetrics
from lenet.runs.record import FORMAT_VERSION
from lenet.runs.samples import SamplesMetadata
from lenet.runs.state import RngStates, TrainStateRecord
from lenet.runs.summary import EvaluationRecord, SeedsRecord, SplitRecord, SummaryRecord
from lenet.runs.sweeps import (AshaRecord, AxisRecord, FailedRecord, PlanRecord, SessionRecord, SessionsRecord,
                               SpaceRecord, TrialsRecord)  # fmt: skip

DOCS = Path(__file__).resolve().parents[3] / "docs"
PAGES = {"en": DOCS / "run-format.md", "zh": DOCS / "zh-CN" / "run-format.md"}

# Each file of a run or a sweep: (where it is, its schema, the schemas of its objects, in words per language).
FILES: list[tuple[str, type, tuple[type, ...], dict[str, str]]] = [
    ("RUN/config.json", ConfigRecord, (DataRecord, TeacherRecord), {
        "en": "Written once, when the run begins.", "zh": "运行开始时写一次。"}),
    ("RUN/metrics.csv", EpochMetrics, (), {
        "en": "CSV with a header row; one row per epoch, written after each epoch. An epoch not judged "
              "(`--eval-every`) has empty eval cells.",
        "zh": "带表头的 CSV；每轮一行，每轮结束后写入。未评估的轮次（`--eval-every`）其评估列为空。"}),
    ("RUN/summary.json", SummaryRecord, (SplitRecord, EvaluationRecord), {
        "en": "The last file a run writes: a run without it is unfinished.",
        "zh": "运行最后写的文件：没有它的运行尚未完成。"}),
    ("GROUP/seeds.json", SeedsRecord, (), {
        "en": "A `--seeds` study's statistics; its runs are GROUP/seed-K/.",
        "zh": "`--seeds` 研究的统计；各次运行在 GROUP/seed-K/。"}),
    ("RUN/model.safetensors", CheckpointMetadata, (), {
        "en": "The weights ([safetensors](https://huggingface.co/docs/safetensors), never pickle); the table is "
              "its metadata, whose values are strings.",
        "zh": "权重（[safetensors](https://huggingface.co/docs/safetensors)，不用 pickle）；下表是它的元数据，值都是字符串。"}),
    ("RUN/samples.safetensors", SamplesMetadata, (), {
        "en": "A few test images of each class, kept when the run begins: the server's samples, and the images a "
              "runtime or an export is checked on where the data set is not named. The table is its metadata; its "
              "tensors are `images` (uint8 [N, C, S, S], the model's input) and `labels` (int64 [N]).",
        "zh": "运行开始时保存的每类几张测试图像：服务器页面上的示例；没有指明数据集时，也用它们检查运行时和导出。"
              "下表是它的元数据；张量为 `images`（uint8 [N, C, S, S]，即模型的输入）和 `labels`（int64 [N]）。"}),
    ("RUN/train_state.pt", TrainStateRecord, (RngStates,), {
        "en": "What `--resume` needs, written after each epoch by `torch.save` and read with `weights_only=True`.",
        "zh": "`--resume` 所需的一切，每轮后以 `torch.save` 写入，以 `weights_only=True` 读取。"}),
    ("RUN/export.json", ExportRecord, (), {
        "en": "The files `lenet export` wrote into the run.", "zh": "`lenet export` 写入运行目录的文件。"}),
    ("FILE.json", ExportEntry, (), {
        "en": "Beside each exported file (model.onnx.json, ...), and each entry of export.json.",
        "zh": "每个导出文件旁边（model.onnx.json 等），也是 export.json 的每一项。"}),
    ("SWEEP/plan.json", PlanRecord, (SpaceRecord, AxisRecord, AshaRecord), {
        "en": "Written when the sweep is planned; `--resume` reads it, never Ray Tune's pickles.",
        "zh": "规划扫描时写入；`--resume` 读它，从不读 Ray Tune 的 pickle。"}),
    ("SWEEP/trials.json", TrialsRecord, (), {
        "en": "Written as each Tune trial ends.", "zh": "每个 Tune 试验结束时写入。"}),
    ("SWEEP/sessions.json", SessionsRecord, (SessionRecord,), {
        "en": "One entry per session: the first run and each resume.", "zh": "每次一项：首次运行与每次续跑。"}),
    ("SWEEP/.../failed.json", FailedRecord, (), {
        "en": "In a sweep's run directory whose training failed for its own reasons (diverged, bad values).",
        "zh": "在训练因自身原因失败（发散、取值不当）的扫描运行目录中。"}),
]

WORDS = {
    "en": {"title": "The run format", "field": "field", "type": "type", "default": "default", "meaning": "meaning",
           "required": "required", "or null": " or null", "object": "object", "list": "list of", "text": "text",
           "integer": "integer", "number": "number", "bool": "true/false", "tensor": "tensor", "one of": "one of",
           "map": "object of", "or": " or ",
           "intro": "Every file lenet writes into a run or a sweep directory, and reads back, has one schema in "
                    "`src/lenet/runs/`; this page is written from them (`python -m lenet.runs.docs`), and a test "
                    "fails when it is stale. JSON files carry `format_version` (now {version}): a file without it "
                    "is of version 0 and is upgraded on reading (`src/lenet/runs/compat.py`); a newer one is refused. "
                    "A malformed field is refused with one line naming the file, the field and what was expected. "
                    "Keys a reader does not know are ignored. lenet never reads a path written in these files: "
                    "data, teachers and checkpoints are named on the command line again. Recipe files and "
                    "`best_recipe.toml` are recipes ([training.md](training.md)); SPACE files are described in "
                    "[sweeps.md](sweeps.md)."},
    "zh": {"title": "运行目录的格式", "field": "字段", "type": "类型", "default": "默认值", "meaning": "含义",
           "required": "必需", "or null": "或 null", "object": "对象", "list": "列表，元素为", "text": "文本",
           "integer": "整数", "number": "数", "bool": "true/false", "tensor": "张量", "one of": "取值之一：",
           "map": "对象，值为", "or": "或",
           "intro": "lenet 写入运行目录或扫描目录、又读回的每个文件，在 `src/lenet/runs/` 中都有唯一的模式（schema）；"
                    "本页由这些模式生成（`python -m lenet.runs.docs`），过时则有测试失败。JSON 文件带 "
                    "`format_version`（当前为 {version}）：没有它的文件为版本 0，读取时升级（`src/lenet/runs/compat.py`）；"
                    "更新的版本会被拒绝。格式不对的字段以一行错误拒绝，指明文件、字段与期望。读者不认识的键被忽略。"
                    "lenet 从不读取这些文件里写的路径：数据、教师模型和检查点都须在命令行上再次给出。配方文件和 "
                    "`best_recipe.toml` 是配方（[training.md](training.md)）；SPACE 文件见 [sweeps.md](sweeps.md)。"},
}


def fields_of(schema: type) -> dict[str, FieldInfo]:
    return schema.model_fields if issubclass(schema, BaseModel) else schema.__pydantic_fields__


def type_name(annotation: Any, lang: str) -> str:
    """A field's type in words: integer, list of text, object of number, one of "val", "test", ..."""
    w = WORDS[lang]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:  # Json[...]: the description says it is JSON text
        return type_name(args[0], lang)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        text = w["or"].join(type_name(a, lang) for a in rest)
        return text + (w["or null"] if len(rest) < len(args) and not text.endswith(w["or null"]) else "")
    if origin is Literal:
        return f"{w['one of']} " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"{w['list']} {type_name(args[0], lang)}"
    if origin is dict:
        return w["object"] if args[1] is Any else f"{w['map']} {type_name(args[1], lang)}"
    names = {int: w["integer"], float: w["number"], str: w["text"], bool: w["bool"], torch.Tensor: w["tensor"]}
    if annotation in names:
        return names[annotation]
    if annotation is Any:
        return w["object"]
    if hasattr(annotation, "FILE"):
        return f"{w['object']} ({annotation.__name__})"
    return getattr(annotation, "__name__", str(annotation))


def default_text(info: FieldInfo, lang: str) -> str:
    if info.is_required():
        return WORDS[lang]["required"]
    if info.default is PydanticUndefined or isinstance(info.default, BaseModel):
        return "…"
    return f"`{json.dumps(info.default, ensure_ascii=False)}`"


def bounds_text(info: FieldInfo) -> str:
    """The field's bounds as written in its schema: ≥ 0, ≤ 1, > 0, pattern."""
    marks = {"ge": "≥", "le": "≤", "gt": ">", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}
    parts = [f"{mark} {getattr(m, key):,}" for m in info.metadata for key, mark in marks.items()
             if getattr(m, key, None) is not None]  # fmt: skip
    parts += [f"`{m.pattern}`".replace("|", "\\|") for m in info.metadata if getattr(m, "pattern", None)]
    return f" ({', '.join(parts)})" if parts else ""


def table(schema: type, lang: str) -> list[str]:
    w = WORDS[lang]
    lines = [f"| {w['field']} | {w['type']} | {w['default']} | {w['meaning']} |", "| --- | --- | --- | --- |"]
    for name, info in fields_of(schema).items():
        key = info.alias or name
        meaning = info.description if lang == "en" else schema.ZH.get(key, info.description)
        kind = type_name(info.annotation, lang) + bounds_text(info)
        lines.append(f"| `{key}` | {kind} | {default_text(info, lang)} | {meaning} |")
    return lines


def page(lang: str) -> str:
    w = WORDS[lang]
    out = [f"# {w['title']}", "", w["intro"].format(version=FORMAT_VERSION), ""]
    for where, schema, objects, words in FILES:
        out += [f"## `{where}`", "", words[lang], "", *table(schema, lang), ""]
        for inner in objects:
            out += [f"### `{inner.FILE}`", "", *table(inner, lang), ""]
    return "\n".join(out).rstrip() + "\n"


def write_pages() -> list[Path]:
    for lang, path in PAGES.items():
        write_text(path, page(lang))
    return list(PAGES.values())


if __name__ == "__main__":
    for written in write_pages():
        print(f"wrote {written}", file=sys.stderr)
