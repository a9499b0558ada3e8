#!/usr/bin/env python3
"""How long the client commands take, start to exit, against a live coordinator.

Usage: scripts/client_startup.py [HINT]   (default: target/release/hint; build it first)

Starts `hint coordinator` on a scratch state directory, then runs `hint --version`,
`hint health`, `hint submit` (a job on placeholder files: the coordinator validates and
plans it, nothing runs it) and `hint status` 20 times each, printing the median, minimum
and maximum wall time. Issue J's bound is 50 ms per command.
"""
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SPEC = """\
[model]
architecture = "tiny_cnn"
weights = "w.safetensors"
layer = "features.7"
[data]
images = "images"
hierarchy = "h.yaml"
[storage]
root = "runs"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(command, runs=20):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        times.append((time.perf_counter() - start) * 1000)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return statistics.median(times), min(times), max(times)


def main() -> None:
    hint = str(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/release/hint").resolve())
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        for name in ["cat/c0.png", "cat/c1.png", "dog/d0.png", "dog/d1.png"]:
            (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "images" / name).write_bytes(b"")
        (root / "w.safetensors").write_bytes(b"")
        (root / "h.yaml").write_text("children:\n  animal: [cat, dog]\n")
        (root / "job.toml").write_text(SPEC)
        url = f"http://127.0.0.1:{free_port()}"
        coordinator = subprocess.Popen(
            [hint, "coordinator", "--state", str(root / "state"), "--listen", url[7:],
             "--http-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while subprocess.run([hint, "health", "--coordinator", url],
                                 capture_output=True).returncode != 0:
                if time.time() > deadline:
                    sys.exit("the coordinator did not come up")
                time.sleep(0.1)
            print(f"{hint}, {url}")
            for args in (["--version"], ["health", "--coordinator", url],
                         ["submit", str(root / "job.toml"), "--coordinator", url],
                         ["status", "--coordinator", url]):
                median, low, high = timed([hint, *args])
                print(f"  hint {args[0]:<10} median {median:5.1f} ms  min {low:5.1f}  max {high:5.1f}")
        finally:
            coordinator.terminate()
            coordinator.wait()


if __name__ == "__main__":
    main()
