"""Packs an ImageFolder into WebDataset-style tar shards with Python's tarfile.

    pack_shards.py IMAGES OUT_PREFIX PER_SHARD --cls {name,index} [--unlabelled]

Images go in torchvision ImageFolder order (classes sorted, then sorted os.walk and sorted
file names), so image k of the shards is image k of the folder. Sample k is the members
`{k:06d}.<ext>` (the file's bytes, extension lower-cased) and `{k:06d}.cls` (the class name,
or with `--cls index` its index among the sorted classes), plus a `{k:06d}.json` that hint
must ignore. Shards are OUT_PREFIX-{0,1,...}.tar, PER_SHARD samples each. `--unlabelled`
appends to the last shard one more image without a `.cls`. Prints the shard count.
"""

import argparse
import io
import json
import os
import tarfile

EXTENSIONS = (".jpg", ".jpeg", ".png")


def image_folder(root):
    classes = sorted(
        d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith(".")
    )
    samples = []
    for index, name in enumerate(classes):
        for dirpath, _, fnames in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            for fname in sorted(fnames):
                if fname.lower().endswith(EXTENSIONS):
                    samples.append((os.path.join(dirpath, fname), name, index))
    return samples


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("images")
    parser.add_argument("out_prefix")
    parser.add_argument("per_shard", type=int)
    parser.add_argument("--cls", choices=["name", "index"], default="name")
    parser.add_argument("--unlabelled", action="store_true")
    args = parser.parse_args()

    samples = image_folder(args.images)
    chunks = [samples[i : i + args.per_shard] for i in range(0, len(samples), args.per_shard)]
    key = 0
    for shard, chunk in enumerate(chunks):
        with tarfile.open(f"{args.out_prefix}-{shard}.tar", "w") as tar:
            for path, name, index in chunk:
                ext = os.path.splitext(path)[1].lower()
                with open(path, "rb") as f:
                    add(tar, f"{key:06d}{ext}", f.read())
                label = name if args.cls == "name" else str(index)
                add(tar, f"{key:06d}.cls", (label + "\n").encode())
                add(tar, f"{key:06d}.json", json.dumps({"source": path}).encode())
                key += 1
            if args.unlabelled and shard == len(chunks) - 1:
                with open(chunk[0][0], "rb") as f:
                    add(tar, f"{key:06d}{os.path.splitext(chunk[0][0])[1].lower()}", f.read())
    print(len(chunks))


if __name__ == "__main__":
    main()
