"""torchvision's ImageNet evaluation transform on image files, the oracle for hint's
preprocessing (``worker/src/images/torchvision_tests.rs``).

    preprocess_oracle.py RESIZE CROP OUT_DIR IMAGE...

For each IMAGE, loads it as torchvision's ``pil_loader`` does (``Image.open(f).convert("RGB")``),
applies ``Resize(RESIZE)`` (bilinear, antialiased on PIL images), ``CenterCrop(CROP)``,
``ToTensor()`` and ImageNet ``Normalize``, and writes the ``[3, CROP, CROP]`` float32 values,
little-endian and C-ordered, to ``OUT_DIR/<image file name>.f32``.
"""

from __future__ import annotations

import argparse
import pathlib

from PIL import Image
from torchvision import transforms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("resize", type=int)
    parser.add_argument("crop", type=int)
    parser.add_argument("out_dir")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()
    transform = transforms.Compose(
        [
            transforms.Resize(args.resize),
            transforms.CenterCrop(args.crop),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    out_dir = pathlib.Path(args.out_dir)
    for path in map(pathlib.Path, args.images):
        with open(path, "rb") as f:
            image = Image.open(f).convert("RGB")
        x = transform(image).contiguous().numpy().astype("<f4")
        (out_dir / (path.name + ".f32")).write_bytes(x.tobytes())


if __name__ == "__main__":
    main()
