"""Reference outputs of a torchvision backbone, the oracle for hint's Rust models.

    reference_models.py ARCH OUT_DIR --num-classes N --size S --batch B --seed K \
        --layers L1,L2,...

writes to OUT_DIR:

- ``weights.safetensors``: the model's ``state_dict`` (with torchvision's extras:
  ``num_batches_tracked``, Inception's ``AuxLogits.*``);
- ``input.safetensors``: ``x``, a random batch ``[B, 3, S, S]``;
- ``reference.safetensors``: ``logits`` and ``layer:<name>`` for each requested layer, the
  output of ``model.get_submodule(name)`` captured by a forward hook (a ViT encoder layer's as its patch tokens'
  map, ``hint_models.as_map``).

Batch-norm layers get random affine parameters and running statistics calibrated on a
separate random batch and then perturbed, so eval-mode normalisation is really exercised
(freshly built models have mean 0 / variance 1, which would hide a bug such as using batch
statistics or the wrong epsilon) while activations stay in a sane range. Layer norms get
random affine parameters and ConvNeXt's layer scales random values, for the same reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hint_models  # noqa: E402


def randomize_batch_norm(model: nn.Module, size: int) -> None:
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration pass
            bn.train()
        # Only the batch norms are in training mode, so Inception skips its auxiliary
        # classifier (which needs larger inputs) and dropout stays off.
        model(torch.randn(4, 3, size, size))
        for bn in bns:
            bn.eval()
            std = bn.running_var.sqrt()
            bn.running_mean.add_(0.1 * std * torch.randn_like(std))
            bn.running_var.mul_(torch.empty_like(std).uniform_(0.8, 1.25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arch", choices=hint_models.ARCHITECTURES)
    parser.add_argument("out_dir")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", default="", help="comma-separated module names")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = hint_models.build(args.arch, args.num_classes, args.size)
    hint_models.randomize_layer_norms(model)
    randomize_batch_norm(model, args.size)
    model.eval()
    x = torch.randn(args.batch, 3, args.size, args.size)

    layers = [name for name in args.layers.split(",") if name]
    captured: dict[str, torch.Tensor] = {}
    for name in layers:
        # Clone: torchvision's in-place ReLUs would otherwise overwrite a captured
        # convolution or batch-norm output.
        def hook(_module, _inputs, output, name=name):
            captured[name] = hint_models.as_map(
                output.detach().clone(), hint_models.channels_last(args.arch, name)
            )

        model.get_submodule(name).register_forward_hook(hook)
    with torch.no_grad():
        logits = model(x)

    os.makedirs(args.out_dir, exist_ok=True)
    hint_models.save_state_dict(model, os.path.join(args.out_dir, "weights.safetensors"))
    save_file({"x": x.contiguous()}, os.path.join(args.out_dir, "input.safetensors"))
    reference = {"logits": logits.contiguous()}
    reference.update({f"layer:{n}": t.contiguous() for n, t in captured.items()})
    save_file(reference, os.path.join(args.out_dir, "reference.safetensors"))
    print(json.dumps({k: list(v.shape) for k, v in reference.items()}))


if __name__ == "__main__":
    main()
