"""Writes random torchvision-shaped VGG weights as safetensors on the GPU machine, which
has torch but maybe not the safetensors package (the format is simple enough to write).
Usage: python3 gpu_weights.py vgg16|vgg19 OUT.safetensors"""
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
    save(vgg_state(sys.argv[1]), sys.argv[2])
