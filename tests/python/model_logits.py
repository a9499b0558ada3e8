"""Logits of a hint-written weights file through its PyTorch twin, the oracle for
``hint train-model``.

    model_logits.py ARCH WEIGHTS INPUT OUT [--images DIR --size S]

- loads WEIGHTS (safetensors ``state_dict``) into ``hint_models.build(ARCH, classes, SIZE)``
  with ``strict=True`` (the class count is read from the classifier's weight);
- runs it on ``x`` from INPUT (safetensors, ``[B, 3, H, W]``) and writes ``logits`` to OUT;
- with ``--images``, also classifies the ImageFolder DIR the way a PyTorch user would
  (``torchvision.datasets.ImageFolder``, ``Resize(S)``, ``CenterCrop(S)``, ``ToTensor``,
  ImageNet ``Normalize``) and prints JSON: ``classes``, ``targets``, ``predictions``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torchvision
from safetensors.torch import load_file, save_file
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hint_models  # noqa: E402

# The final classifier's weight of each architecture (``Architecture::classifier_weight``).
CLASSIFIER_WEIGHT = {
    "tiny_cnn": "classifier.2.weight",
    "vgg11": "classifier.6.weight",
    "vgg16": "classifier.6.weight",
    "vgg19": "classifier.6.weight",
    "resnet18": "fc.weight",
    "resnet50": "fc.weight",
    "inception_v3": "fc.weight",
    "efficientnet_b0": "classifier.1.weight",
    "convnext_tiny": "classifier.2.weight",
    "vit_b_16": "heads.head.weight",
}
assert set(CLASSIFIER_WEIGHT) == set(hint_models.ARCHITECTURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arch", choices=sorted(CLASSIFIER_WEIGHT))
    parser.add_argument("weights")
    parser.add_argument("input")
    parser.add_argument("out")
    parser.add_argument("--images")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    state = load_file(args.weights)
    classes = state[CLASSIFIER_WEIGHT[args.arch]].shape[0]
    model = hint_models.build(args.arch, classes, args.size)
    model.load_state_dict(state, strict=True)
    model.eval()

    x = load_file(args.input)["x"]
    with torch.no_grad():
        logits = model(x)
    save_file({"logits": logits.contiguous()}, args.out)

    if args.images:
        transform = transforms.Compose(
            [
                transforms.Resize(args.size),
                transforms.CenterCrop(args.size),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )
        dataset = torchvision.datasets.ImageFolder(args.images, transform=transform)
        loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=False)
        predictions: list[int] = []
        with torch.no_grad():
            for batch, _ in loader:
                predictions.extend(model(batch).argmax(1).tolist())
        print(
            json.dumps(
                {
                    "classes": dataset.classes,
                    "targets": list(dataset.targets),
                    "predictions": predictions,
                }
            )
        )


if __name__ == "__main__":
    main()
