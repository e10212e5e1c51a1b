"""Train ResNet18 on CIFAR-10 and save the checkpoint that is graded.

    python train.py                # 50 epochs; the checkpoint is saved after each epoch
    python train.py --epochs 1     # a quick try

The checkpoint is ./checkpoint/resnet18_cifar10.pth, a dict {'net': state_dict}:
hand it in with resnet.py.
"""

import argparse
import os
import time

import torch
import torch.nn as nn
import torchvision
import torchvision.transforms as transforms

from resnet import ResNet18

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CHECKPOINT = os.path.join("checkpoint", "resnet18_cifar10.pth")


def loaders(data_dir, batch_size):
    train_tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    train_set = torchvision.datasets.CIFAR10(data_dir, train=True, download=True, transform=train_tf)
    test_set = torchvision.datasets.CIFAR10(data_dir, train=False, download=True, transform=test_tf)
    return (torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=2),
            torch.utils.data.DataLoader(test_set, batch_size=100, shuffle=False, num_workers=2))


def learning_rate(base, epoch):
    """Divided by 10 at epoch 50 and again at epoch 100."""
    return base / (10 ** ((epoch >= 50) + (epoch >= 100)))


def train_one_epoch(net, loader, optimizer, criterion, device):
    net.train()
    seen = correct = 0
    total_loss = 0.0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = net(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * labels.size(0)
        correct += (outputs.argmax(1) == labels).sum().item()
        seen += labels.size(0)
    return total_loss / seen, correct / seen


@torch.no_grad()
def evaluate(net, loader, device):
    net.eval()
    seen = correct = 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        correct += (net(images).argmax(1) == labels).sum().item()
        seen += labels.size(0)
    return correct / seen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", default="./data")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    train_loader, test_loader = loaders(args.data_dir, args.batch_size)
    net = ResNet18().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    os.makedirs(os.path.dirname(CHECKPOINT), exist_ok=True)
    started = time.time()
    for epoch in range(args.epochs):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args.lr, epoch)
        loss, train_acc = train_one_epoch(net, train_loader, optimizer, criterion, device)
        test_acc = evaluate(net, test_loader, device)
        torch.save({"net": net.state_dict()}, CHECKPOINT)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}, train {train_acc:.2%}, test {test_acc:.2%} "
              f"({time.time() - started:.0f} s) -> {CHECKPOINT}")


if __name__ == "__main__":
    main()
