"""Independent PyTorch computation of ``hint ablate``'s drops, the oracle of its test.

    ablation_oracle.py JOB IMAGES WEIGHTS OUT

- JOB: the job directory (``labels.txt``, ``concepts.json``, ``spec.json`` and the
  ``results/ablation.json`` whose neuron sets are replayed);
- IMAGES: the ImageFolder ``hint ablate --images`` evaluated (every image: the test asks
  for more images than there are), classified the way a PyTorch user would
  (``ToTensor``, ImageNet ``Normalize``; the images already have the crop's size);
- the model is ``hint_models.build(architecture)`` with WEIGHTS loaded ``strict=True``;
  removal is a forward hook on the layer's module that replaces the removed channels of
  its output by 0 or by the channel's mean over every position of every image;
- OUT gets JSON: one object per (concept, selection, removal, fraction, draw) with the
  four drops (on/off accuracy, on/off probability), defined as in ``hint_common::ablation``.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torchvision
from safetensors.torch import load_file
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hint_models  # noqa: E402


def module(model: torch.nn.Module, name: str) -> torch.nn.Module:
    return dict(model.named_modules())[name]


def main() -> None:
    job, images, weights, out = sys.argv[1:5]
    spec = json.load(open(os.path.join(job, "spec.json")))
    report = json.load(open(os.path.join(job, "results", "ablation.json")))
    concepts = json.load(open(os.path.join(job, "concepts.json")))
    outputs = [l.strip() for l in open(os.path.join(job, "labels.txt")) if l.strip()]
    output_of = {name: i for i, name in enumerate(outputs)}

    state = load_file(weights)
    arch = spec["model"]["architecture"]
    model = hint_models.build(arch, state["classifier.2.weight"].shape[0])
    model.load_state_dict(state, strict=True)
    model.eval()
    layer = module(model, spec["model"]["layer"])

    normalise = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    dataset = torchvision.datasets.ImageFolder(
        images, transform=transforms.Compose([transforms.ToTensor(), normalise])
    )
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    truth = torch.tensor([output_of[dataset.classes[t]] for _, t in dataset.samples])

    captured = {}
    removal = {}

    def hook(_module, _inputs, output):
        captured["z"] = output
        if "channels" in removal:
            output = output.clone()
            c = removal["channels"]
            if removal["kind"] == "zero":
                output[:, c] = 0.0
            else:
                output[:, c] = removal["mean"][c].view(1, -1, 1, 1)
        return output

    layer.register_forward_hook(hook)
    with torch.no_grad():
        base = torch.softmax(model(x), dim=1)
        channel_mean = captured["z"].mean(dim=(0, 2, 3))

    names = concepts["labels"]
    leaves = {
        c["id"]: torch.tensor([output_of[names[l]] for l in c["labels"]])
        for c in concepts["concepts"]
    }

    def measure(p: torch.Tensor, concept: int):
        own = leaves[concept]
        on = torch.isin(truth, own)
        pred = p.argmax(dim=1)
        acc = torch.where(on, torch.isin(pred, own), pred == truth).float()
        prob = torch.where(on, p[:, own].sum(dim=1), p[torch.arange(len(truth)), truth])
        return on, acc, prob

    rows = []
    for concept in report["concepts"]:
        cid = concept["concept"]
        on, base_acc, base_prob = measure(base, cid)
        for s in concept["sets"]:
            for kind in report["removals"]:
                removal.update(channels=torch.tensor(s["neurons"]), kind=kind, mean=channel_mean)
                with torch.no_grad():
                    p = torch.softmax(model(x), dim=1)
                removal.clear()
                _, acc, prob = measure(p, cid)
                da, dp = base_acc - acc, base_prob - prob
                mean = lambda v, side: v[side].mean().item() if side.any() else None  # noqa: E731
                rows.append(
                    {
                        "concept": cid,
                        "selection": s["selection"],
                        "removal": kind,
                        "fraction": s["fraction"],
                        "draw": s["draw"],
                        "on_accuracy": mean(da, on),
                        "off_accuracy": mean(da, ~on),
                        "on_probability": mean(dp, on),
                        "off_probability": mean(dp, ~on),
                        "on_images": int(on.sum()),
                        "off_images": int((~on).sum()),
                    }
                )
    json.dump({"images": len(dataset), "rows": rows}, open(out, "w"))


if __name__ == "__main__":
    main()
