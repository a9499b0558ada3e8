"""Reference hidden-layer saliency, computed the way a PyTorch user would: forward hooks
on the layer's module, `retain_grad`, and (for guided backpropagation) full backward
hooks on every `nn.ReLU` that clamp the gradient at zero. A model without ReLUs
(EfficientNet, ConvNeXt, ViT) gets no guided backpropagation: hint refuses it there.
The memory layout is hint's on a CPU (channels-last input, the layer's output made
contiguous): a layout changes the order of rounding, and on these random networks
integrated gradients and SmoothGrad turn last-bit differences into differences of 3e-4
(ResNet-18, baselines one ulp apart) up to 0.17 (EfficientNet-B0, the whole network
channels-last) of the largest saliency.

Two steps, so that the Rust side can hand over SmoothGrad's noise in between:

    reference_saliency.py setup ARCH DIR --size S --batch B --classes C --seed K
        writes DIR/weights.safetensors (state_dict) and DIR/input.safetensors (x, targets)
    reference_saliency.py reference ARCH DIR --layer L --samples N --noise-level F \
            --steps M [--baseline zero|black]
        reads DIR/noise.safetensors (noise.0 … noise.{N-1}, each shaped like x) and writes
        DIR/reference.safetensors: act, sal:<method>, map:<method>:<aggregation>
        (without guided_backprop's for a model without ReLUs)
"""

import argparse
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
import hint_models  # noqa: E402
from reference_models import randomize_batch_norm  # noqa: E402

METHODS = [
    "gradient",
    "gradient_x_activation",
    "guided_backprop",
    "smoothgrad",
    "integrated_gradients",
]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def aggregate(s, name):
    if name == "norm":
        return s.norm(dim=1)
    if name == "sum":
        return s.sum(dim=1)
    if name == "filter_norm":
        return s.clamp(min=0).norm(dim=1)
    if name == "max":
        return s.amax(dim=1)
    if name == "abs_sum":
        return s.abs().sum(dim=1)
    if name == "abs_max":
        return s.abs().amax(dim=1)
    raise ValueError(name)


# Statistics drawn at random, unrelated to the activations, leave a random EfficientNet-B0's
# gradient at features.3 near 1e-9 (integrated gradients' near 1e-14, below the
# normalisation's floor): its statistics are calibrated on a random batch instead.
CALIBRATED_BATCH_NORM = ("efficientnet_b0",)

AGGREGATIONS = ["norm", "sum", "filter_norm", "max", "abs_sum", "abs_max"]


def normalise(a):
    flat = a.flatten(1)
    lo = flat.amin(dim=1, keepdim=True)
    p99 = torch.quantile(flat, 0.99, dim=1, keepdim=True)
    return ((flat - lo) / (p99 - lo).clamp(min=1e-12)).clamp(0, 1).view_as(a)


class LayerProbe:
    """Captures the layer's output on the forward pass and keeps its gradient."""

    def __init__(self, model, layer, channels_last=False):
        self.output = None
        self.channels_last = channels_last
        self.handle = model.get_submodule(layer).register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        # hint runs a CPU model channels-last up to the layer and hands the layer on
        # contiguous (`Backbone::forward_to`); the same here, so that both round alike.
        output = output.contiguous()
        output.retain_grad()
        self.output = output
        return output


def layer_grad(model, probe, x, targets):
    model.zero_grad(set_to_none=True)
    logits = model(x.contiguous(memory_format=torch.channels_last))
    logits.gather(1, targets[:, None]).sum().backward()
    return (
        hint_models.as_map(probe.output.detach(), probe.channels_last),
        hint_models.as_map(probe.output.grad.detach(), probe.channels_last),
    )


def guided_hooks(model):
    def clamp(module, grad_input, grad_output):
        return (grad_input[0].clamp(min=0),)

    return [
        m.register_full_backward_hook(clamp)
        for m in model.modules()
        if isinstance(m, torch.nn.ReLU)
    ]


def module_relus(model):
    """torchvision's Inception ``BasicConv2d`` calls ``F.relu``: give each one an ``nn.ReLU``
    module computing the same values, so that the guided hooks reach its ReLU."""
    from torchvision.models.inception import BasicConv2d

    for m in model.modules():
        if isinstance(m, BasicConv2d):
            m.relu = torch.nn.ReLU()
            m.forward = (lambda block: lambda x: block.relu(block.bn(block.conv(x))))(m)


def setup(args):
    torch.manual_seed(args.seed)
    model = hint_models.build(args.arch, args.classes, args.size)
    hint_models.randomize_layer_norms(model)
    if args.arch in CALIBRATED_BATCH_NORM:
        randomize_batch_norm(model, args.size)
    else:
        # Non-trivial eval-mode batch norm: random running statistics and affine weights.
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    hint_models.save_state_dict(model, os.path.join(args.dir, "weights.safetensors"))
    x = torch.randn(args.batch, 3, args.size, args.size)
    targets = torch.randint(0, args.classes, (args.batch,))
    save_file({"x": x, "targets": targets}, os.path.join(args.dir, "input.safetensors"))


def reference(args):
    inputs = load_file(os.path.join(args.dir, "input.safetensors"))
    x, targets = inputs["x"], inputs["targets"]
    model = hint_models.build(args.arch, args.classes, x.shape[-1])
    model.load_state_dict(load_file(os.path.join(args.dir, "weights.safetensors")))
    model.eval()
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False  # hooks and retain_grad need out-of-place ReLUs and SiLUs
    module_relus(model)
    has_relu = any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    noise = load_file(os.path.join(args.dir, "noise.safetensors"))
    probe = LayerProbe(model, args.layer, hint_models.channels_last(args.arch, args.layer))

    act, grad = layer_grad(model, probe, x, targets)
    out = {"act": act}
    out["sal:gradient"] = grad
    out["sal:gradient_x_activation"] = grad * act

    if has_relu:
        handles = guided_hooks(model)
        _, guided = layer_grad(model, probe, x, targets)
        for h in handles:
            h.remove()
        out["sal:guided_backprop"] = guided

    flat = x.flatten(1)
    sigma = (args.noise_level * (flat.amax(1) - flat.amin(1))).view(-1, 1, 1, 1)
    total = torch.zeros_like(act)
    for k in range(args.samples):
        _, g = layer_grad(model, probe, x + sigma * noise[f"noise.{k}"], targets)
        total += g
    out["sal:smoothgrad"] = total / args.samples

    if args.baseline == "zero":
        x0 = torch.zeros_like(x)
    else:
        # A black image through torchvision's Normalize: float32 arithmetic, as hint's.
        black = (torch.zeros(3) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        x0 = black.view(1, 3, 1, 1).expand_as(x).clone()
    z0, _ = layer_grad(model, probe, x0, targets)
    total = torch.zeros_like(act)
    for k in range(1, args.steps + 1):
        _, g = layer_grad(model, probe, x0 + (k / args.steps) * (x - x0), targets)
        total += g
    out["sal:integrated_gradients"] = total / args.steps * (act - z0)

    for method in [m for m in METHODS if f"sal:{m}" in out]:
        for agg in AGGREGATIONS:
            out[f"map:{method}:{agg}"] = normalise(aggregate(out[f"sal:{method}"], agg))
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(args.dir, "reference.safetensors"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["setup", "reference"])
    parser.add_argument("arch")
    parser.add_argument("dir")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layer")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--noise-level", type=float, default=0.15)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--baseline", default="zero", choices=["zero", "black"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.step == "setup":
        setup(args)
    else:
        reference(args)


if __name__ == "__main__":
    main()
