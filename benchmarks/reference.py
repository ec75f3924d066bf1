"""The tutorial's input pipeline, rebuilt without torchvision: the baseline where torchvision cannot be
installed (elsewhere train_speed runs the tutorial's own code, benchmarks/tutorial.py).

Per image, as torchvision's FashionMNIST with `transforms.ToTensor()` does it: the uint8
array becomes a PIL image, then a float tensor scaled to [0, 1]; a DataLoader with worker
processes shuffles and collates batches of 64. The model, loss and Adam are the tutorial's.
This is a yardstick, not a product path.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lenet.data.dataset import FashionMNIST


class TutorialFashionMNIST(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images[:, 0].cpu(), labels.cpu()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[index].numpy(), mode="L")  # torchvision's FashionMNIST
        return to_tensor(img), int(self.labels[index])


def to_tensor(pic: Image.Image) -> torch.Tensor:
    """torchvision.transforms.ToTensor for a mode-L PIL image."""
    array = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    array = array.view(pic.size[1], pic.size[0], 1).permute(2, 0, 1).contiguous()
    return array.to(dtype=torch.get_default_dtype()).div(255)


def train_loader(data: FashionMNIST, batch_size: int = 64, workers: int = 2, seed: int = 0) -> DataLoader:
    return DataLoader(
        TutorialFashionMNIST(data.train_images, data.train_labels), batch_size=batch_size, shuffle=True,
        num_workers=workers, generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
    )  # fmt: skip


def train_epoch(model, optimizer, loader: DataLoader, device: torch.device) -> float:
    """One epoch exactly as the tutorial's train(); returns the seconds it took."""
    model.train()
    start = time.perf_counter()
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        y_hat = model(X)
        loss = F.cross_entropy(y_hat, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the tutorial sums loss.item() every step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
