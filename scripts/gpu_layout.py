"""NCHW against channels-last (NHWC) on the GPU, PyTorch alone: does hint's GPU path, which
keeps NCHW there, leave speed behind? Times what the extraction floor times — a batched
forward through the whole network and the gradient of each image's top logit with respect to
the layer (no autograd below it) — for VGG-16 `features.26` and ResNet-50 `layer3` at batch 64, 224×224, float32 with
PyTorch's default TF32 settings, random weights. The two layouts are alternated in one
process, twice; each figure is the best of 10 timed iterations after 3 warm-up ones.
Usage (on the device machine, from scripts/gpu_check.sh step 4c): python3 gpu_layout.py"""
import time

import torch
import torchvision


def layer_of(model, name):
    return dict(model.named_modules())[name]


def images_per_second(model, layer, x, iters=10, warmup=3):
    held = {}

    def cut(_module, _inputs, out):
        # As the floor does: no autograd below the layer, the map a leaf that needs a gradient.
        held["map"] = out.detach().requires_grad_(True)
        return held["map"]

    hook = layer.register_forward_hook(cut)
    try:
        best = float("inf")
        for i in range(warmup + iters):
            torch.cuda.synchronize()
            start = time.perf_counter()
            logits = model(x)
            (grad,) = torch.autograd.grad(logits.max(dim=1).values.sum(), held["map"])
            grad.sum().item()  # waits for the backward
            if i >= warmup:
                best = min(best, time.perf_counter() - start)
        return x.shape[0] / best
    finally:
        hook.remove()


def main():
    torch.manual_seed(0)
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; "
          f"cudnn {torch.backends.cudnn.version()}; batch 64 at 224x224, float32")
    for arch, name in [("vgg16", "features.26"), ("resnet50", "layer3")]:
        model = getattr(torchvision.models, arch)(weights=None).cuda().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        for m in model.modules():  # the map is a leaf that needs a gradient: no in-place ReLU on it
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        layer = layer_of(model, name)
        base = torch.randn(64, 3, 224, 224, device="cuda")
        rates = {"nchw": [], "channels_last": []}
        for _ in range(2):
            for fmt in rates:
                memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
                model = model.to(memory_format=memory_format)
                x = base.contiguous(memory_format=memory_format).requires_grad_(False)
                rates[fmt].append(images_per_second(model, layer, x))
        nchw, nhwc = max(rates["nchw"]), max(rates["channels_last"])
        print(f"{arch} {name}: nchw {', '.join(f'{r:.0f}' for r in rates['nchw'])} images/s; "
              f"channels_last {', '.join(f'{r:.0f}' for r in rates['channels_last'])} images/s; "
              f"channels_last / nchw {nhwc / nchw:.2f}x (best of each)")


if __name__ == "__main__":
    main()
