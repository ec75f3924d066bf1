"""The tutorial's own code, as its text writes it: the yardstick benchmarks/train_speed.py measures
lenet against wherever torchvision can be installed (elsewhere it uses the copy in reference.py).

    .venv-tutorial/bin/python benchmarks/tutorial.py --root DIR [--epochs 5] [--workers 2] [--seed 0]
                                                     [--device auto] [--threads N] [--judge-every-epoch]

torchvision's `FashionMNIST` with `ToTensor()`, `DataLoader(batch_size=64, shuffle=True,
num_workers=...)`, the tutorial's LeNet, `CrossEntropyLoss`, `Adam(lr=0.01)` and its training loop
(`loss.item()` every step). DIR holds FashionMNIST/raw/ with the four uncompressed IDX files:
train_speed writes them from lenet's copy of the data, so both pipelines read the same bytes, offline.
Two changes, neither in the timed loop: test accuracy divides by the 10,000 test images (the
tutorial divides by batches x 64), and the seed is set. Prints one JSON line: seconds per epoch,
test accuracy after each judged epoch, evaluation seconds, versions.

It runs under its own interpreter (torch and torchvision of the benchmark's own venv, made by
scripts/get-tutorial-venv.sh), so it imports nothing from lenet.
"""

import argparse
import json
import time

import torch
import torchvision
from torch import nn
from torchvision import transforms


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 6, 5),  # in_channels, out_channels, kernel_size
            nn.Sigmoid(),
            nn.MaxPool2d(2, 2),  # kernel_size, stride
            nn.Conv2d(6, 16, 5),
            nn.Sigmoid(),
            nn.MaxPool2d(2, 2),
        )
        self.fc = nn.Sequential(
            nn.Linear(16 * 4 * 4, 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, 10),
        )

    def forward(self, img):
        feature = self.conv(img)
        output = self.fc(feature.view(img.shape[0], -1))
        return output


def load_data(root, batch_size, num_workers, seed):
    mnist_train = torchvision.datasets.FashionMNIST(root=root, train=True, download=False, transform=transforms.ToTensor())
    mnist_test = torchvision.datasets.FashionMNIST(root=root, train=False, download=False, transform=transforms.ToTensor())
    train_iter = torch.utils.data.DataLoader(mnist_train, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                             generator=torch.Generator().manual_seed(seed))  # fmt: skip
    test_iter = torch.utils.data.DataLoader(mnist_test, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return train_iter, test_iter


def train_epoch(net, train_iter, loss, opt, device):
    """One epoch of the tutorial's train(); the seconds it took."""
    start = time.perf_counter()
    for X, y in train_iter:
        X, y = X.to(device), y.to(device)
        y_hat = net(X)
        l = loss(y_hat, y)  # the tutorial's names
        opt.zero_grad()
        l.backward()
        opt.step()
        l.item()  # the tutorial sums loss.item() every step
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def test(net, test_iter, device):
    correct = 0
    for X, y in test_iter:
        X, y = X.to(device), y.to(device)
        correct += (net(X).argmax(dim=1) == y).sum().item()
    return correct / len(test_iter.dataset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="a directory holding FashionMNIST/raw/")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (cuda where there is one), cpu or cuda")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--judge-every-epoch", action="store_true", help="test after each epoch, not only the last")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)  # fmt: skip
    torch.manual_seed(args.seed)
    net = LeNet().to(device)
    train_iter, test_iter = load_data(args.root, 64, args.workers, args.seed)
    loss = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    seconds, accuracies, eval_seconds = [], [], []
    for epoch in range(args.epochs):
        net.train()
        seconds.append(train_epoch(net, train_iter, loss, opt, device))
        if args.judge_every_epoch or epoch == args.epochs - 1:  # judged apart, never in the epoch's seconds
            start = time.perf_counter()
            net.eval()
            accuracies.append(test(net, test_iter, device))
            eval_seconds.append(time.perf_counter() - start)
    result = {"seconds": seconds, "accuracy": accuracies[-1], "accuracies": accuracies, "eval_seconds": eval_seconds,
              "versions": f"torch {torch.__version__}, torchvision {torchvision.__version__}"}  # fmt: skip
    if device.type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps(result))


if __name__ == "__main__":
    main()
