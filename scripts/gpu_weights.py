"""Writes random torchvision-shaped VGG or ResNet-50 weights as safetensors on the GPU
machine, which has torch but maybe not torchvision or the safetensors package (the format is
simple enough to write). Usage: python3 gpu_weights.py vgg16|vgg19|resnet50 OUT.safetensors"""
import ctypes, json, struct, sys
import torch

CONVS = {"vgg16": [2, 2, 3, 3, 3], "vgg19": [2, 2, 4, 4, 4]}
WIDTHS = [64, 128, 256, 512, 512]


def vgg_state(arch):
    g = torch.Generator().manual_seed(0)
    state, i, cin = {}, 0, 3
    for n, cout in zip(CONVS[arch], WIDTHS):
        for _ in range(n):
            state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (cin * 9)) ** 0.5
            state[f"features.{i}.bias"] = torch.zeros(cout)
            i, cin = i + 2, cout
        i += 1  # the max-pool
    for j, (fin, fout) in zip([0, 3, 6], [(25088, 4096), (4096, 4096), (4096, 1000)]):
        state[f"classifier.{j}.weight"] = torch.randn(fout, fin, generator=g) * (2 / fin) ** 0.5
        state[f"classifier.{j}.bias"] = torch.zeros(fout)
    return state


def resnet50_state():
    """torchvision's resnet50 state_dict keys and shapes (Bottleneck, expansion 4), He-scaled
    random convolutions, BatchNorm at identity statistics; `num_batches_tracked` is left out
    (hint does not read it)."""
    g = torch.Generator().manual_seed(0)
    state = {}

    def conv(name, cout, cin, k):
        state[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2 / (cin * k * k)) ** 0.5

    def bn(name, c):
        state[f"{name}.weight"] = torch.ones(c)
        state[f"{name}.bias"] = torch.zeros(c)
        state[f"{name}.running_mean"] = torch.zeros(c)
        state[f"{name}.running_var"] = torch.ones(c)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for layer, (blocks, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512]), start=1):
        for b in range(blocks):
            name = f"layer{layer}.{b}"
            conv(f"{name}.conv1", width, inplanes, 1)
            bn(f"{name}.bn1", width)
            conv(f"{name}.conv2", width, width, 3)
            bn(f"{name}.bn2", width)
            conv(f"{name}.conv3", width * 4, width, 1)
            bn(f"{name}.bn3", width * 4)
            if b == 0:
                conv(f"{name}.downsample.0", width * 4, inplanes, 1)
                bn(f"{name}.downsample.1", width * 4)
            inplanes = width * 4
    state["fc.weight"] = torch.randn(1000, 2048, generator=g) * (1 / 2048) ** 0.5
    state["fc.bias"] = torch.zeros(1000)
    return state


def save(state, path):
    header, offset = {}, 0
    for k, t in state.items():
        n = t.numel() * 4
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for t in state.values():
            t = t.contiguous()
            f.write(ctypes.string_at(t.data_ptr(), t.numel() * 4))


if __name__ == "__main__":
    arch = sys.argv[1]
    save(resnet50_state() if arch == "resnet50" else vgg_state(arch), sys.argv[2])
