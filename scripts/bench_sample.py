#!/usr/bin/env python3
"""The sample stage's read rate against a raw sequential read of the same files, in one run
(issue I's "measure, don't assume" bench; the deploy estimate uses its figure).

Usage: scripts/bench_sample.py [--gb 4] [--files 32] [--d 512] [--labels 20]
                               [--max-per-class 2000] [--compression zstd,lz4]
                               [--row-group-mb 16] [--threads 0] [--runs 3]
                               [--hint target/release/hint]
                               [--dir DIR] [--keep]

Writes --gb GB of region rows with pyarrow following the documented schema and hint's own
writer settings (no dictionary on the activations, --row-group-mb MB row groups — hint's
writer aims at 16 —, a page index, f16 activations of D = --d channels, 14x14 positions per
image, 30% foreground; values as after a ReLU: half zero, the rest |N(0, 1)|), once per
codec of --compression (the values of `extract.compression`: zstd level 1, hint's default,
and LZ4_RAW) and row group size of --row-group-mb (comma-separated: "16,64" compares them),
the same rows in each. Then, for each of --runs rounds, for each of those file sets in
turn, in this order:

  (a) raw:    `cat FILES > /dev/null` — one sequential reader of every byte;
  (b) sample: `hint sample --regions DIR --threads T` — the sample stage as one machine runs
              it: read, decompress and decode every file, key and pool every row, merge the
              threads' pools, write sample.parquet + sample.json;
  (c) the same on one thread: the per-core rate a deploy estimate scales by cores.

Before each measurement the files are dropped from the page cache (posix_fadvise
DONTNEED, which needs no privileges), so both read from the disk; a warm round (no drop)
follows for context. Prints, per file set, MB/s of file bytes for both, and the ratio
sample / raw of the medians (issue I's goal: >= 0.8); the sets' samples must have the
same size. The files are removed at the end unless --keep.
"""
import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import region_file

POSITIONS = 14
FIXED_ROW_BYTES = 8 + 4 + 2 + 2 + 4 + 1


def region_table(rng, first_image: int, images: int, labels: int, d: int) -> pa.Table:
    """One file's rows: every position of `images` images, image ids from `first_image`."""
    per_image = POSITIONS * POSITIONS
    n = images * per_image
    image_id = np.repeat(np.arange(first_image, first_image + images, dtype=np.uint64), per_image)
    label = (image_id % labels).astype(np.uint32)
    y = np.tile(np.repeat(np.arange(POSITIONS, dtype=np.uint16), POSITIONS), images)
    x = np.tile(np.tile(np.arange(POSITIONS, dtype=np.uint16), POSITIONS), images)
    saliency = rng.random(n, dtype=np.float32)
    foreground = saliency > 0.7
    values = np.abs(rng.standard_normal(n * d, dtype=np.float32))
    values[rng.random(n * d, dtype=np.float32) < 0.5] = 0.0
    metadata = {
        "model": "resnet18", "layer": "layer4", "method": "gradient",
        "aggregation": "norm", "threshold": "0.7", "D": str(d),
        "H": str(POSITIONS), "W": str(POSITIONS), "activation_type": "f16",
        "labels": json.dumps([f"class{i:04}" for i in range(labels)]),
    }
    return region_file.region_table(image_id, label, y, x, saliency, foreground,
                                    values.astype(np.float16), pa.float16(), d, metadata)


def write_files(root: pathlib.Path, args, compression: str, group_mb: int) -> list:
    """The bench's files compressed by `compression` (pyarrow's name: "zstd" at level 1, as
    hint writes, or "lz4", Parquet's LZ4_RAW) in row groups of about `group_mb` MB
    uncompressed; the same rows whichever the codec and group size."""
    rng = np.random.default_rng(0)
    row_bytes = FIXED_ROW_BYTES + 2 * args.d
    per_file_rows = int(args.gb * 1e9 / args.files / row_bytes)
    images = max(1, per_file_rows // (POSITIONS * POSITIONS))
    group_rows = min(max((group_mb << 20) // row_bytes, 1024), 1 << 20)
    level = {"compression_level": 1} if compression == "zstd" else {}
    paths = []
    for i in range(args.files):
        path = root / f"regions-{i:05}.parquet"
        table = region_table(rng, i * images, images, args.labels, args.d)
        pq.write_table(table, path, compression=compression, **level,
                       use_dictionary=[c for c in table.column_names if c != "activation"],
                       row_group_size=group_rows, write_page_index=True)
        paths.append(path)
        print(f"\r  {compression}: wrote {i + 1}/{args.files} files", end="", file=sys.stderr,
              flush=True)
    print(file=sys.stderr)
    return paths


def drop_cache(paths) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(command) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def kept_rows(sample_dir: pathlib.Path) -> int:
    return pq.ParquetFile(sample_dir / "sample.parquet").metadata.num_rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gb", type=float, default=4.0,
                   help="GB of region rows to write (before compression)")
    p.add_argument("--files", type=int, default=32)
    p.add_argument("--d", type=int, default=512, help="channels per activation")
    p.add_argument("--labels", type=int, default=20)
    p.add_argument("--max-per-class", type=int, default=2000,
                   help="pool size per label and of background: the defaults keep about 1%% "
                        "of 4 GB's rows, as the deploy estimate's ImageNet sample keeps 1.3%%")
    p.add_argument("--compression", default="zstd,lz4",
                   help="the codecs to compare, comma-separated (extract.compression's values)")
    p.add_argument("--row-group-mb", default="16",
                   help="row group sizes to compare, MB uncompressed, comma-separated "
                        "(hint's writer aims at 16)")
    p.add_argument("--threads", type=int, default=0, help="hint sample --threads (0: cores)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--hint", default="target/release/hint")
    p.add_argument("--dir", help="where to write the files (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the files")
    args = p.parse_args()
    if not set(args.compression.split(",")) <= {"zstd", "lz4"}:
        sys.exit(f"--compression: expected zstd and/or lz4, found {args.compression}")
    try:
        group_sizes = [int(mb) for mb in args.row_group_mb.split(",")]
    except ValueError:
        sys.exit(f"--row-group-mb: expected sizes in MB, found {args.row_group_mb}")
    # Each file set: a codec, and a row group size when more than one is compared.
    file_sets = [(codec, mb) for codec in args.compression.split(",") for mb in group_sizes]
    name = lambda codec, mb: codec if len(group_sizes) == 1 else f"{codec}, {mb} MB groups"
    hint = pathlib.Path(args.hint).resolve()
    if not hint.is_file():
        sys.exit(f"{hint} does not exist: build it with `cargo build --release -p hint-coordinator`")
    root = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="hint-bench-sample-"))
    try:
        print(f"writing {args.gb:g} GB of region rows (D = {args.d}, {args.labels} labels) "
              f"per file set into {root}", file=sys.stderr)
        files = {}
        for codec, mb in file_sets:
            regions = root / f"regions-{codec}-{mb}mb"
            regions.mkdir(parents=True, exist_ok=True)
            files[name(codec, mb)] = (regions, write_files(regions, args, codec, mb))
        names = list(files)
        any_paths = files[names[0]][1]
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in any_paths)
        threads = args.threads or os.cpu_count()
        out = root / "sample"

        def sample_command(regions, threads: int):
            shutil.rmtree(out, ignore_errors=True)
            return [str(hint), "sample", "--regions", str(regions), "--out", str(out),
                    "--max-per-class", str(args.max_per_class), "--threads", str(threads)]

        # Each round measures every codec in turn, so the disk's drift hits them alike.
        times = {codec: {"raw": [], "sample": [], "single": []} for codec in names}
        kept = {}
        for _ in range(args.runs):
            for codec, (regions, paths) in files.items():
                measured = times[codec]
                drop_cache(paths)
                measured["raw"].append(timed(["cat", *map(str, paths)]))
                drop_cache(paths)
                measured["sample"].append(timed(sample_command(regions, threads)))
                drop_cache(paths)
                measured["single"].append(timed(sample_command(regions, 1)))
                kept[codec] = kept_rows(out)
        if len(set(kept.values())) != 1:
            sys.exit(f"the file sets' samples differ in size: {kept}")
        kept = kept[names[0]]

        load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()} cores, load {load:.1f}; {len(any_paths)} files per "
              f"codec, {rows} rows of D = {args.d} f16; max_per_class {args.max_per_class}: "
              f"{kept} rows kept ({100 * kept / rows:.1f}%)")
        print("cold (page cache dropped), MB/s of file bytes per run (so a codec's larger "
              "files read faster by cat):")
        for codec, (regions, paths) in files.items():
            measured = times[codec]
            mb = sum(path.stat().st_size for path in paths) / 1e6

            def rates(seconds):
                return ", ".join(f"{mb / s:.0f}" for s in seconds)

            raw_rate = mb / statistics.median(measured["raw"])
            sample_rate = mb / statistics.median(measured["sample"])
            print(f" {codec}: {mb:.0f} MB")
            print(f"  raw    cat > /dev/null        {rates(measured['raw'])}   "
                  f"median {raw_rate:.0f}")
            print(f"  sample hint sample, {threads} threads {rates(measured['sample'])}   "
                  f"median {sample_rate:.0f}")
            print(f"  sample hint sample, 1 thread  {rates(measured['single'])}   median "
                  f"{mb / statistics.median(measured['single']):.0f}")
            print(f"  ratio sample / raw = {sample_rate / raw_rate:.2f}  (issue I's goal: >= 0.8)"
                  f"; rows per second {rows / statistics.median(measured['sample']):,.0f}")
            warm_raw = timed(["cat", *map(str, paths)])
            warm_sample = timed(sample_command(regions, threads))
            print(f"  warm (files in the page cache): raw {mb / warm_raw:.0f} MB/s, "
                  f"sample {mb / warm_sample:.0f} MB/s")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
