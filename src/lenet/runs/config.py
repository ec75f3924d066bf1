"""config.json: what a run was started with. Written once, when the run begins; read by a resume,
`report`, `compare`, `serve` and the checks that a run's data is the data named."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lenet.runs.record import Record, Versioned

HEX64 = r"^[0-9a-f]{64}$"
CONFIG_FILE = "config.json"


class DataRecord(Record):
    """The data set a run trained on."""

    FILE = "config.json: data"
    ZH = {"name": "数据集名称：注册表中的名字，或 folder:PATH、csv:PATH",
          "source": "数据读取自何处（仅作记录：lenet 从不按它读取数据）",
          "sha256": "用户自己的数据：其四个张量各自的 SHA-256；注册表中的数据集：其文件的 SHA-256",
          "spec": "数据集的描述：名称、类别、均值、标准差、图像边长，以及用户数据的摘要",
          "skipped": "--skip-bad 略去的文件（最多 1,000 个）", "skipped_count": "略去的文件总数",
          "skip_bad": "是否用了 --skip-bad", "subset": "只用了前多少张训练和测试图像（无则为全部）"}

    name: str = Field("fashion-mnist", min_length=1, description="a registry name, or folder:PATH or csv:PATH")
    source: str | None = Field(None, description="where the data was read from (a record only: lenet never reads a "
                                                 "path written in a run)")
    sha256: dict[str, str] | None = Field(None, description="a user's data: the SHA-256 of each of its four tensors; "
                                                            "a registry data set: of each of its files")
    spec: dict[str, Any] | None = Field(None, description="the data set's description: name, classes, mean, std, image "
                                                          "side and, for a user's data, its one digest")
    skipped: list[str] = Field([], description="files left out by --skip-bad (the first 1,000)")
    skipped_count: int = Field(0, ge=0, description="how many files --skip-bad left out")
    skip_bad: bool = Field(False, description="whether unreadable files were left out (--skip-bad)")


class TeacherRecord(Record):
    """A distilling run's teacher, by the digest of its weights."""

    FILE = "config.json: teacher"
    ZH = {"path": "训练开始时给出的教师（运行目录或 .safetensors 文件）；续训时不读它，须再次用 --teacher 指明",
          "weights": "读到的权重文件", "sha256": "权重文件字节的 SHA-256：续训时的教师必须与之相同"}

    path: str = Field(description="the teacher named when the run began (a run directory or a .safetensors file); "
                                  "a resume never reads it: --teacher names the teacher again")
    weights: str = Field(description="the weights file read")
    sha256: str = Field(pattern=HEX64, description="SHA-256 of the weights file's bytes: a resume's teacher must match")


class ConfigRecord(Versioned):
    """config.json: what a run was started with."""

    FILE = CONFIG_FILE
    ZH = {"format_version": "文件格式的版本；较旧的版本在读取时升级",
          "recipe_name": "配方的来源：内置配方名、配方文件路径，或扫描中的试验",
          "recipe": "配方的全部字段（见 docs/training.md）",
          "model_config": "网络的配置（LeNetConfig）", "views": "测试时的视图：flip、shift",
          "seed": "随机种子", "val_split": "留作验证集的训练图像数（0：无）",
          "eval_split": "每轮评估用的划分：val 或 test", "device": "训练所用的设备",
          "device_name": "设备的可读名称", "deterministic": "CUDA 上是否用确定性算子",
          "eval_every": "每隔几轮评估一次（0：只在最后一轮）", "report": "训练后是否写报告",
          "engine": "训练步骤如何执行的设置（不改变数学）", "data": "训练所用的数据集",
          "environment": "lenet、torch、Python 的版本，平台与命令行", "started": "开始时间"}

    recipe_name: str = Field(description="where the recipe came from: a built-in recipe's name, a recipe file's path, "
                                         "or a sweep's trial")
    recipe: dict[str, Any] = Field(description="every field of the recipe (docs/training.md)")
    net: dict[str, Any] | None = Field(None, alias="model_config", description="the network's configuration (LeNetConfig)")
    views: dict[str, Any] | None = Field(None, description="the test-time views: flip, shift")
    seed: int = Field(ge=0, le=2**63 - 1, description="the run's seed")
    val_split: int = Field(0, ge=0, le=2**31, description="training images held out for validation (0: none)")
    eval_split: str = Field("test", pattern="^(val|test)$", description="what each epoch is judged on: val or test")
    device: str = Field(min_length=1, description="the device the run trained on")
    device_name: str | None = Field(None, description="the device's name, for people")
    deterministic: bool = Field(False, description="CUDA: deterministic kernels")
    eval_every: int = Field(1, ge=0, le=2**31, description="judge every N-th epoch and the last (0: the last only)")
    report: bool = Field(True, description="whether the report is written after training")
    engine: dict[str, Any] = Field({}, description="how the step runs (compile, CUDA graphs, threads...): never the "
                                                   "maths")
    data: DataRecord = Field(DataRecord(), description="the data set the run trained on")
    teacher: TeacherRecord | None = Field(None, exclude_if=lambda v: v is None, description="a distilling run's teacher (absent without one)")
    environment: dict[str, Any] = Field({}, description="versions of lenet, torch and Python, the platform, the "
                                                        "command line")
    started: str = Field("", description="when the run began")
