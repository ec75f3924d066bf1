"""What `lenet export` writes about a file it made: the sidecar FILE.json beside it, and export.json in
the run directory (one entry per format: "onnx", "torchscript", "onnx-int8")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from lenet.core.errors import LenetError
from lenet.runs.compat import upgrade_export_record
from lenet.runs.config import HEX64
from lenet.runs.record import Versioned, parse, read_record, write_record

EXPORT_RECORD = "export.json"


class ExportEntry(Versioned):
    """One exported file: where, its digest, how it was checked, and what it expects as input."""

    FILE = "FILE.json (beside an exported file), and each entry of export.json"
    ZH = {"format_version": "文件格式的版本", "format": "onnx 或 torchscript", "path": "导出的文件", "bytes": "文件大小（字节）",
          "sha256": "文件字节的 SHA-256", "verification": "在测试集上与 PyTorch 比对的结果",
          "lenet_version": "lenet 版本", "torch_version": "torch 版本", "checkpoint": "导出所用的权重文件",
          "model_config": "网络的配置", "views": "测试时的视图", "parameters": "参数个数",
          "preprocessing": "调用者须如何准备输入：形状、缩放、归一化", "quantization": "int8 量化的方法与校准（仅 int8）"}

    format: str = Field(pattern="^(onnx|torchscript)$", description="onnx or torchscript")
    path: str = Field(description="the exported file")
    bytes: int = Field(ge=0, le=2**53, description="its size")
    sha256: str = Field(pattern=HEX64, description="SHA-256 of its bytes")
    verification: dict[str, Any] = Field(description="its check against PyTorch on the test set")
    lenet_version: str = Field(description="the lenet that exported it")
    torch_version: str = Field(description="the torch that exported it")
    checkpoint: str = Field(description="the weights exported")
    net: dict[str, Any] = Field(alias="model_config", description="the network's configuration")
    views: dict[str, Any] = Field(description="the test-time views inside the file")
    parameters: int = Field(ge=0, le=2**53, description="parameters")
    preprocessing: dict[str, Any] = Field(description="what a caller feeds it: shapes, scaling, normalisation")
    quantization: dict[str, Any] | None = Field(None, description="how an int8 file was quantized and calibrated")


class ExportRecord(Versioned):
    """export.json: the run's exported files by kind."""

    FILE = EXPORT_RECORD
    ZH = {"format_version": "文件格式的版本", "exports": "按种类（onnx、torchscript、onnx-int8）列出的导出文件"}

    exports: dict[str, ExportEntry] = Field(description='the exported files by kind: "onnx", "torchscript", "onnx-int8"')


def write_sidecar(path: Path, entry: ExportEntry) -> None:
    write_record(path, entry)


def read_sidecar(path: Path) -> ExportEntry:
    return read_record(path, ExportEntry)


def add_export(run_dir: Path, key: str, entry: ExportEntry) -> Path:
    """`entry` into the run's export.json beside those there; a damaged export.json is rewritten whole (it
    only describes files, each of which has its own sidecar)."""
    path = run_dir / EXPORT_RECORD
    entries: dict[str, ExportEntry] = {}
    if path.is_file():
        try:
            entries = dict(read_record(path, ExportRecord, upgrade_export_record).exports)
        except LenetError:
            entries = {}
    write_record(path, ExportRecord(exports={**entries, key: entry}))
    return path


def export_entry(fields: dict[str, Any], where: str) -> ExportEntry:
    return parse(ExportEntry, fields, where)

