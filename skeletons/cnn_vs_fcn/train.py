"""Train one of the three networks on the dog images and save its checkpoint.

    python train.py --data_dir ./images --arch custom_cnn     # -> custom_cnn.pth
    python train.py --data_dir ./images --arch resnet18       # -> resnet18.pth
    python train.py --data_dir ./images --arch resfcn18       # -> resfcn18.pth (about 1.8 GB)

data_dir holds train/<breed>/ and test/<breed>/ folders.  Hand in the three .pth files
with custom_cnn.py and resfcn.py.
"""

import argparse

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from custom_cnn import CustomCNN
from dataloader import ImageFolderSet, preprocessing
from resfcn import ResNet18, resfcn18

ARCHS = {
    "custom_cnn": lambda num_classes, img_size: CustomCNN(num_cls=num_classes, img_size=img_size),
    "resnet18": lambda num_classes, img_size: ResNet18(num_classes=num_classes),
    "resfcn18": lambda num_classes, img_size: resfcn18(num_classes=num_classes, img_size=img_size),
}


def run_epoch(model, loader, device, optimizer=None):
    """One pass over the loader; trains when an optimizer is given.  Returns (loss, accuracy)."""
    training = optimizer is not None
    model.train(training)
    criterion = nn.CrossEntropyLoss()
    seen = correct = 0
    total_loss = 0.0
    with torch.set_grad_enabled(training):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            loss = criterion(outputs, labels)
            if training:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * labels.size(0)
            correct += (outputs.argmax(1) == labels).sum().item()
            seen += labels.size(0)
    return total_loss / seen, correct / seen


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="./images")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="resnet18")
    parser.add_argument("--img_size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    train_set = ImageFolderSet(f"{args.data_dir}/train", preprocessing(args.img_size, train=True))
    test_set = ImageFolderSet(f"{args.data_dir}/test", preprocessing(args.img_size))
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, num_workers=2)
    test_loader = DataLoader(test_set, batch_size=args.batch_size, num_workers=2)

    model = ARCHS[args.arch](len(train_set.classes), args.img_size).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        train_loss, train_acc = run_epoch(model, train_loader, args.device, optimizer)
        test_loss, test_acc = run_epoch(model, test_loader, args.device)
        print(f"{args.arch} {epoch + 1}/{args.epochs}: train loss {train_loss:.3f} acc {train_acc:.3f}, "
              f"test loss {test_loss:.3f} acc {test_acc:.3f}")
    torch.save(model.state_dict(), f"{args.arch}.pth")
    print(f"saved {args.arch}.pth")


if __name__ == "__main__":
    main()
