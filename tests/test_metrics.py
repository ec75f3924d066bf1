import pytest
import torch

from lenet.training.metrics import confusion_matrix, evaluate
from lenet.models.lenet import create_model


def test_confusion_matrix_counts():
    cm = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_eval_counts_every_test_image_once(fmnist):
    """Accuracy over exactly 10,000 images (the tutorial divides by 10,048)."""
    torch.manual_seed(1)
    model = create_model("lenet_bn").eval()
    result = evaluate(model, fmnist.test_images, fmnist.test_labels, batch_size=64)  # 157 batches, the last of 16
    # An independent count, one image at a time in plain Python.
    with torch.no_grad():
        logits = model(fmnist.test_images.float() / 255)
    correct = sum(int(p) == int(t) for p, t in zip(logits.argmax(1), fmnist.test_labels))
    assert result.total == 10_000 and result.correct == correct
    assert result.accuracy == correct / 10_000
    assert result.confusion.sum() == 10_000 and result.confusion.sum(1).tolist() == [1000] * 10
    loss = torch.nn.functional.cross_entropy(logits, fmnist.test_labels).item()
    assert abs(result.loss - loss) < 1e-4


def test_eval_batch_size_does_not_change_results(fmnist):
    model = create_model("lenet").eval()
    a = evaluate(model, fmnist.test_images[:999], fmnist.test_labels[:999], batch_size=1000)
    b = evaluate(model, fmnist.test_images[:999], fmnist.test_labels[:999], batch_size=64)
    assert a.correct == b.correct and abs(a.loss - b.loss) < 1e-5 and a.total == 999


def test_per_class_precision_and_recall_read_the_confusion_matrix_both_ways():
    from lenet.training.metrics import Evaluation

    # rows: true class; columns: predicted. Class 2 is never predicted: precision 0, not a division by zero.
    confusion = torch.tensor([[8, 2, 0], [1, 3, 0], [3, 1, 0]])
    evaluation = Evaluation(loss=0.0, correct=11, total=18, confusion=confusion, classes=("a", "b", "c"))
    assert evaluation.per_class_accuracy == pytest.approx([8 / 10, 3 / 4, 0.0])  # recall
    assert evaluation.per_class_precision == pytest.approx([8 / 12, 3 / 6, 0.0])
    assert evaluation.to_dict()["per_class_precision"] == pytest.approx({"a": 8 / 12, "b": 3 / 6, "c": 0.0})

