"""Build grader/data/cifar10_test_sample.zip: a balanced sample of the real CIFAR-10 test set.

Usage: python tools/make_cifar10_sample.py CIFAR10_JPEG_ROOT [--per-class 300]
CIFAR10_JPEG_ROOT holds test/<class>/NNNN.jpg.  The JPEG bytes are stored as they are
(no re-encoding), picked by a fixed seed, so the sample is reproducible.
"""

import argparse
import random
import zipfile
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("root", type=Path)
parser.add_argument("--per-class", type=int, default=300)
parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "grader/data/cifar10_test_sample.zip")
args = parser.parse_args()

rng = random.Random(20261123)
with zipfile.ZipFile(args.out, "w", compression=zipfile.ZIP_STORED) as z:
    for cls in sorted(p.name for p in (args.root / "test").iterdir() if p.is_dir()):
        files = sorted((args.root / "test" / cls).glob("*.jpg"))
        for path in sorted(rng.sample(files, args.per_class)):
            z.writestr(f"test/{cls}/{path.name}", path.read_bytes())
print(args.out, args.out.stat().st_size // 1024, "KiB")
