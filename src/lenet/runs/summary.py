"""summary.json (a run's final figures, the last file a run writes) and seeds.json (a --seeds study)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lenet.runs.record import Record, Versioned

SUMMARY_FILE, SEEDS_FILE = "summary.json", "seeds.json"
MAX_COUNT = 2**53  # images in a split, parameters: any real count, not a JSON number no reader can hold



class EvaluationRecord(Record):
    """A model's figures on one split, with every test-time view."""

    FILE = "summary.json: test"
    ZH = {"loss": "交叉熵损失，按图像平均", "accuracy": "准确率：判对的图像所占比例",
          "correct": "判对的图像数", "total": "图像总数", "per_class_accuracy": "每个真实类别的准确率（召回率）",
          "per_class_precision": "每个预测类别的精确率", "confusion_matrix": "混淆矩阵：[真实类别][预测类别] 的计数"}

    loss: float = Field(description="cross-entropy, mean over images")
    accuracy: float = Field(ge=0, le=1, description="the share of images judged right")
    correct: int = Field(ge=0, le=MAX_COUNT, description="images judged right")
    total: int = Field(ge=0, le=MAX_COUNT, description="images judged")
    per_class_accuracy: dict[str, float] = Field({}, description="per true class, the share judged right (recall)")
    per_class_precision: dict[str, float] = Field({}, description="per predicted class, the share that truly is it")
    confusion_matrix: list[list[int]] = Field([], description="counts of [true class][predicted class]")


class SplitRecord(Record):
    """Loss and accuracy on the validation split."""

    FILE = "summary.json: val"
    ZH = {"loss": "交叉熵损失，按图像平均", "accuracy": "准确率"}

    loss: float = Field(description="cross-entropy, mean over images")
    accuracy: float = Field(ge=0, le=1, description="the share of images judged right")


class SummaryRecord(Versioned):
    """summary.json: a finished run's figures. Its presence is what makes a run finished."""

    FILE = SUMMARY_FILE
    ZH = {"format_version": "文件格式的版本；较旧的版本在读取时升级", "model": "网络的配置（LeNetConfig）",
          "views": "测试时的视图", "parameters": "参数个数", "epochs": "训练的轮数",
          "train_seconds": "训练所用的秒数（不含评估）", "final_train_loss": "最后一轮的训练损失",
          "final_train_accuracy": "最后一轮的训练准确率", "per_epoch_split": "每轮评估所用的划分：val 或 test",
          "val": "验证集上的结果（无验证集则为 null）", "test": "测试集上的结果，用全部测试时视图",
          "stuck": "是否停在随机猜测的水平", "warnings": "训练中的警告"}

    model: dict[str, Any] = Field(description="the network's configuration (LeNetConfig)")
    views: dict[str, Any] | None = Field(None, description="the test-time views")
    parameters: int = Field(0, ge=0, le=MAX_COUNT, description="the network's parameter count")
    epochs: int = Field(ge=0, le=MAX_COUNT, description="epochs trained")
    train_seconds: float = Field(0.0, ge=0, description="seconds of training, evaluation not counted")
    final_train_loss: float | None = Field(None, description="the last epoch's training loss")
    final_train_accuracy: float | None = Field(None, ge=0, le=1, description="the last epoch's training accuracy")
    per_epoch_split: str = Field("test", pattern="^(val|test)$", description="what each epoch was judged on")
    val: SplitRecord | None = Field(None, description="figures on the validation split (null without one)")
    test: EvaluationRecord = Field(description="figures on the test set, with every test-time view")
    stuck: bool = Field(False, description="whether the run stayed at chance")
    warnings: list[str] = Field([], description="what training warned of")


class SeedsRecord(Versioned):
    """seeds.json: a --seeds study's statistics over its runs' final test accuracies."""

    FILE = SEEDS_FILE
    ZH = {"format_version": "文件格式的版本", "recipe": "配方的全部字段", "split": "统计所用的划分（test）",
          "runs": "运行数", "mean": "平均准确率", "std": "样本标准差", "min": "最低", "max": "最高",
          "accuracies": "各个种子的准确率", "stuck": "停在随机猜测水平的运行数", "seeds": "所用的种子"}

    recipe: dict[str, Any] = Field(description="every field of the recipe")
    split: str = Field("test", description="the split the figures are of")
    runs: int = Field(ge=1, le=MAX_COUNT, description="runs")
    mean: float = Field(ge=0, le=1, description="mean accuracy")
    std: float = Field(ge=0, description="sample standard deviation")
    min: float = Field(ge=0, le=1, description="lowest accuracy")
    max: float = Field(ge=0, le=1, description="highest accuracy")
    accuracies: list[float] = Field(description="each seed's accuracy")
    stuck: int = Field(0, ge=0, description="runs that stayed at chance")
    seeds: list[int] = Field([], description="the seeds")
