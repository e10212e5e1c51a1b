"""An image-folder data set: one folder per class, as in Kaggle's dog breed images.

    images/
      train/n02085620-Chihuahua/*.jpg, train/n02085782-Japanese_spaniel/*.jpg, ...
      test/n02085620-Chihuahua/*.jpg, ...

Class indices follow the sorted folder names, so train and test agree.
"""

import os

from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def preprocessing(img_size, train=False):
    """Resize to img_size x img_size, (flip when training), normalise as ImageNet."""
    steps = [transforms.Resize((img_size, img_size))]
    if train:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return transforms.Compose(steps)


class ImageFolderSet(Dataset):
    """(image, class index) pairs from root/<class name>/<image files>."""

    def __init__(self, root, preproc):
        self.classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.lab2idx = {name: index for index, name in enumerate(self.classes)}
        self.samples = [(os.path.join(root, name, file), self.lab2idx[name])
                        for name in self.classes
                        for file in sorted(os.listdir(os.path.join(root, name)))
                        if file.lower().endswith(IMAGE_SUFFIXES)]
        self.preproc = preproc

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        with Image.open(path) as img:
            img = self.preproc(img.convert("RGB"))  # some images are grayscale or RGBA
        return img, label
