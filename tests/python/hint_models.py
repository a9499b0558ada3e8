"""PyTorch twins of the backbones hint builds, for tests and for exporting weights.

hint loads a torchvision ``state_dict`` saved as safetensors. To export a model of your
own (any of ``tiny_cnn``, ``vgg11``, ``vgg16``, ``vgg19``, ``resnet18``, ``resnet50``,
``inception_v3``, ``efficientnet_b0``, ``convnext_tiny``, ``vit_b_16``)::

    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, "model.safetensors")

(``save_state_dict(model, path)`` below does the same.) Keys must be torchvision's: save
``model.module.state_dict()`` for a model wrapped in ``nn.DataParallel``.
"""

from __future__ import annotations

import re

import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

ARCHITECTURES = (
    "tiny_cnn",
    "vgg11",
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet50",
    "inception_v3",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_b_16",
)

# Built by torchvision's own function of that name, with its defaults.
TORCHVISION_AS_IS = (
    "vgg11",
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet50",
    "efficientnet_b0",
    "convnext_tiny",
)


class TinyCnn(nn.Module):
    """The three-convolution VGG-shaped network of ``worker/src/models/tiny.rs``.

    Module names (``features.N``, ``classifier.N``) are what hint's layer names and the
    ``state_dict`` keys are made of; keep both files identical module for module.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(64, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


def tiny_cnn(num_classes: int) -> TinyCnn:
    """hint's ``tiny_cnn``, in eval mode."""
    return TinyCnn(num_classes).eval()


def build(arch: str, num_classes: int, size: int = 224) -> nn.Module:
    """The torchvision model (random weights, eval mode) hint builds for ``arch``. ``size``
    matters only to ``vit_b_16``, whose position embeddings are for ``size × size`` images
    (torchvision's ``VisionTransformer(image_size=size)`` with ``vit_b_16``'s shape)."""
    if arch == "tiny_cnn":
        return tiny_cnn(num_classes)
    if arch in TORCHVISION_AS_IS:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    elif arch == "vit_b_16":
        model = torchvision.models.VisionTransformer(
            image_size=size,
            patch_size=16,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            mlp_dim=3072,
            num_classes=num_classes,
        )
        # torchvision zero-initialises the head and the class token: every logit and every
        # gradient would be zero, which would hide any bug. Random values instead.
        with torch.no_grad():
            model.heads.head.weight.normal_(0.0, 0.05)
            model.class_token.normal_(0.0, 0.5)
    elif arch == "inception_v3":
        # transform_input=True as in torchvision's ImageNet weights (hint applies it too);
        # the auxiliary classifier is saved but only used in training.
        model = torchvision.models.inception_v3(
            weights=None,
            aux_logits=True,
            init_weights=True,
            transform_input=True,
            num_classes=num_classes,
        )
    else:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return model.eval()


def channels_last(arch: str, layer: str) -> bool:
    """Whether torchvision's module ``layer`` outputs ``[B, H, W, C]``: the modules of a
    ConvNeXt block after its first ``Permute`` (``block.2`` … ``block.5``)."""
    return arch == "convnext_tiny" and re.search(r"\.block\.[2-5]$", layer) is not None


def as_map(output: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """A layer's output as hint sees it: a ViT encoder layer's tokens ``[B, 1 + g², D]``
    become the patch tokens' map ``[B, D, g, g]`` (the class token dropped); a channels-last
    output (see ``channels_last``) is permuted to ``[B, C, H, W]``; a CNN's map stays as it
    is."""
    if channels_last:
        return output.permute(0, 3, 1, 2)
    if output.dim() != 3:
        return output
    batch, tokens, width = output.shape
    grid = round((tokens - 1) ** 0.5)
    return output[:, 1:].transpose(1, 2).reshape(batch, width, grid, grid)


def randomize_layer_norms(model: nn.Module) -> None:
    """Random affine parameters for every LayerNorm (ConvNeXt's ``LayerNorm2d`` is one) and
    random layer scales: freshly built, they are 1/0 and 1e-6, which would hide a block's
    whole residual branch and a wrong normalisation."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
            layer_scale = getattr(module, "layer_scale", None)
            if isinstance(layer_scale, nn.Parameter):
                layer_scale.uniform_(0.2, 1.0)


def save_state_dict(model: nn.Module, path: str) -> None:
    """Writes ``model.state_dict()`` as safetensors, the format hint loads."""
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
