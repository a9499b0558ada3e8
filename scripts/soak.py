#!/usr/bin/env python3
"""Soak: many jobs back to back on a real `hint coordinator` while workers are killed.

    .venv/bin/python scripts/soak.py [--jobs 20] [--minutes 12] [--seed 0] [--kill-coordinator]

One run does, in a fresh directory (--dir, default target/soak; emptied first if an earlier
soak made it, refused if it holds anything else):

1. a tiny synthetic world (`hint synth`: 8 classes × --per-class images; `hint train-model`,
   5 epochs) and a job spec over it (32 extract, 4 train and 240 Shapley tasks by default),
   small enough that one job takes seconds: the point is many jobs and many kills;
2. the reference: the spec on its own coordinator with one worker, undisturbed;
3. the soak: a coordinator with --workers (3) `hint-worker` processes runs --jobs (20)
   jobs of the same spec, one after another. Meanwhile a schedule drawn from --seed kills a
   random live worker with SIGKILL every --kill-every seconds (never the last live one) and
   starts it again --restart-after seconds later, so 3 are alive most of the time; with
   --kill-coordinator the coordinator too is killed with SIGKILL every
   --coordinator-kill-every seconds and started again at once on its state directory and
   address (it resumes the journal; the workers reconnect).

Checks, each job: it succeeds; its `results/phi.csv` is byte for byte the reference's, and
so is `phi.parquet` (its table and metadata, all but the `hint.job.id` key that names the
job); its region files hold the reference's rows, each (image, y, x) once. A job that
differs is explained in the summary: Φ's rows and missing concepts, and the quarantined
tasks of its job.json (an attempt lost with its worker counts toward the spec's
`max_attempts`, --max-attempts, 3 by default, so a task whose workers are killed 3 times
is quarantined and its concepts leave Φ: the soak counts that as a mismatch).
After each job the coordinator's resident memory (VmRSS in /proc/<pid>/status) is sampled.
The memory rule: after the --warmup-jobs first jobs, no sample may exceed the largest
warm-up sample by more than --rss-tolerance-percent (10) percent plus --rss-tolerance-mib
(4) MiB. Samples of a restarted coordinator count the same (a restart that replays the
journal into more memory than before is growth too). The least-squares slope after
warm-up is reported, not judged; so is, for comparison, the RSS of a coordinator started
on the soak's state at the end (what replaying the jobs' journal takes).

Time: everything, setup included, fits in --minutes. When the budget runs out, no new job
is submitted and a job in flight is cancelled and reported as unfinished (not a failure).

Exit status 0 only if every finished job matched the reference, memory stayed flat and no
worker exited unless killed (1 otherwise, 2 for a setup error). The schedule (which worker,
how many seconds apart) is replayed exactly by the same --seed; the moments within a job
depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPEC = """[job]
name = "soak"
seed = {seed}

[model]
architecture = "tiny_cnn"
weights = "{weights}"
layer = "features.7"

[data]
images = "{images}"
hierarchy = "{hierarchy}"

[extract]
method = "gradient_x_activation"
background_ratio = 0.25
batch_size = 8
images_per_task = {images_per_task}

[classify]
concepts_per_task = 4

[shapley]
permutations = {permutations}
permutations_per_task = 4

[scheduler]
max_attempts = {max_attempts}

[storage]
root = "{storage}"
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Many jobs on a real coordinator while workers are killed; "
        "Φ checked against an undisturbed run, coordinator memory checked for growth.",
    )
    p.add_argument("--jobs", type=int, default=20, help="jobs to run (default 20)")
    p.add_argument("--minutes", type=float, default=12.0, help="time budget, setup included (default 12)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill schedule (default 0)")
    p.add_argument("--workers", type=int, default=3, help="workers of the soak (default 3)")
    p.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "release",
                   help="where `hint` and `hint-worker` are (default target/release)")
    p.add_argument("--dir", type=Path, default=ROOT / "target" / "soak",
                   help="working directory (default target/soak): new, empty, or an earlier soak's, which is emptied")
    p.add_argument("--kill-every", type=float, nargs=2, default=(1.5, 5.0), metavar=("MIN", "MAX"),
                   help="seconds between worker kills, uniform (default 1.5 5)")
    p.add_argument("--restart-after", type=float, nargs=2, default=(0.5, 3.0), metavar=("MIN", "MAX"),
                   help="seconds a killed worker stays down, uniform (default 0.5 3)")
    p.add_argument("--kill-coordinator", action="store_true",
                   help="also kill -9 the coordinator now and then and restart it on its state")
    p.add_argument("--coordinator-kill-every", type=float, nargs=2, default=(20.0, 45.0),
                   metavar=("MIN", "MAX"), help="seconds between coordinator kills, uniform (default 20 45)")
    p.add_argument("--lease-timeout", type=int, default=3,
                   help="the coordinator's --lease-timeout-seconds (default 3: lost tasks return fast)")
    p.add_argument("--per-class", type=int, default=64, help="images per class of the world (default 64; 8 classes)")
    p.add_argument("--images-per-task", type=int, default=16, help="extract shard size (default 16: 32 extract tasks)")
    p.add_argument("--permutations", type=int, default=64,
                   help="Shapley permutations per concept, 4 per task (default 64: 240 Shapley tasks)")
    p.add_argument("--max-attempts", type=int, default=3,
                   help="the spec's scheduler.max_attempts (default 3, the spec's default; a killed "
                   "worker's attempt counts toward it)")
    p.add_argument("--job-timeout", type=float, default=300.0, help="seconds one job may take (default 300)")
    p.add_argument("--warmup-jobs", type=int, default=3, help="jobs before memory is judged (default 3)")
    p.add_argument("--rss-tolerance-percent", type=float, default=10.0,
                   help="allowed growth over the warm-up maximum, percent (default 10)")
    p.add_argument("--rss-tolerance-mib", type=float, default=4.0,
                   help="allowed growth over the warm-up maximum, MiB, added to the percentage (default 4)")
    args = p.parse_args()
    if args.jobs < 1 or args.workers < 1:
        p.error("--jobs and --workers must be at least 1")
    for name in ("kill_every", "restart_after", "coordinator_kill_every"):
        lo, hi = getattr(args, name)
        if not 0 < lo <= hi:
            p.error(f"--{name.replace('_', '-')}: need 0 < MIN <= MAX")
    return args


class SetupError(Exception):
    """Something before the soak itself went wrong (binaries, world, reference)."""


def say(text: str) -> None:
    print(text, flush=True)


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(OMP_WAIT_POLICY="passive", OMP_NUM_THREADS="1", HINT_DEVICE="cpu", HINT_LOG="warn")
    return e


def rss_kib(pid: int) -> int | None:
    """VmRSS of a live process, in KiB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def kill9(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


class Hint:
    """The `hint` CLI of --bin-dir."""

    def __init__(self, bin_dir: Path):
        self.hint = bin_dir / "hint"
        self.worker = bin_dir / "hint-worker"
        for b in (self.hint, self.worker):
            if not os.access(b, os.X_OK):
                raise SetupError(
                    f"{b} is missing: `source scripts/env.sh && cargo build --release "
                    "-p hint-coordinator -p hint-worker`, or give --bin-dir")

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        try:
            out = subprocess.run([str(self.hint), *args], capture_output=True, text=True,
                                 env=env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            out = subprocess.CompletedProcess(args, 124, "", f"no answer within {timeout:g} s")
        if check and out.returncode != 0:
            raise SetupError(f"hint {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
        return out


@dataclass
class Coordinator:
    """A `hint coordinator` process over a state directory; restartable on the same address."""

    hint: Hint
    state: Path
    lease_timeout: int
    logs: Path
    proc: subprocess.Popen | None = None
    url: str = ""
    incarnation: int = 0

    def start(self) -> None:
        listen = self.url.removeprefix("http://") if self.url else "127.0.0.1:0"
        address = self.state.with_suffix(".address")
        address.unlink(missing_ok=True)
        self.incarnation += 1
        log = open(self.logs / f"{self.state.name}-coordinator-{self.incarnation}.log", "w")
        self.proc = subprocess.Popen(
            [str(self.hint.hint), "coordinator", "--listen", listen, "--state", str(self.state),
             "--address-file", str(address), "--lease-timeout-seconds", str(self.lease_timeout),
             "--http-listen", "127.0.0.1:0"],
            stdout=log, stderr=subprocess.STDOUT, env=env())
        log.close()
        deadline = time.monotonic() + 60
        while not address.exists() or not address.read_text().strip():
            if self.proc.poll() is not None:
                raise SetupError(f"the coordinator exited ({self.proc.returncode}); see {log.name}")
            if time.monotonic() > deadline:
                raise SetupError("the coordinator did not start listening within 60 s")
            time.sleep(0.05)
        self.url = address.read_text().strip()

    def kill(self) -> None:
        if self.proc is not None:
            kill9(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int | None:
        return rss_kib(self.proc.pid) if self.alive() else None


@dataclass
class Worker:
    """One worker slot: its current process, restarted under the same name."""

    name: str
    proc: subprocess.Popen | None = None
    restart_at: float | None = None  # monotonic time of a pending restart
    starts: int = 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_worker(hint: Hint, worker: Worker, url: str, logs: Path) -> None:
    worker.starts += 1
    log = open(logs / f"{worker.name}-{worker.starts}.log", "w")
    worker.proc = subprocess.Popen(
        [str(hint.worker), "--coordinator", url, "--device", "cpu", "--name", worker.name,
         "--decode-threads", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env())
    log.close()
    worker.restart_at = None


def phase(status_text: str) -> str | None:
    """succeeded / failed / cancelled from `hint status JOB`, or None while it runs."""
    first = status_text.splitlines()[0] if status_text else ""
    for p in ("succeeded", "failed", "cancelled"):
        if f": {p}" in first:
            return p
    return None


def current_stage(status_text: str) -> str:
    """The stage named in the status's first line (`… running — stage shapley, …`)."""
    first = status_text.splitlines()[0] if status_text else ""
    if "stage " in first:
        return first.split("stage ", 1)[1].split(",")[0].split()[0]
    return "?"


def region_rows(regions: Path) -> tuple[int, int]:
    """(rows, distinct (image_id, y, x) positions) of a job's region files."""
    import pyarrow.dataset as ds

    table = ds.dataset(str(regions), format="parquet").to_table(columns=["image_id", "y", "x"])
    positions = set(zip(*(table.column(c).to_pylist() for c in ("image_id", "y", "x"))))
    return table.num_rows, len(positions)


@dataclass
class Outcome:
    phi_csv: bytes
    phi_parquet: object  # a pyarrow Table; its metadata without the job id
    rows: tuple[int, int]


def outcome(job_dir: Path) -> Outcome:
    import pyarrow.parquet as pq

    results = job_dir / "results"
    table = pq.read_table(results / "phi.parquet")
    # The file names its job (`hint.job.id`); everything else must be the reference's.
    metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"hint.job.id"}
    return Outcome((results / "phi.csv").read_bytes(), table.replace_schema_metadata(metadata),
                   region_rows(job_dir / "regions"))


def same_parquet(a: object, b: object) -> bool:
    return a.equals(b, check_metadata=True)


@dataclass
class JobRecord:
    number: int
    job_id: str = ""
    result: str = ""  # succeeded / failed / cancelled / unfinished / timed out / submit failed
    seconds: float = 0.0
    worker_kills: int = 0
    coordinator_kills: int = 0
    phi_csv_equal: bool | None = None
    phi_parquet_equal: bool | None = None
    rows: tuple[int, int] | None = None
    rows_equal: bool | None = None
    rss_kib: int | None = None
    incarnation: int = 0
    note: str = ""
    details: list[str] = field(default_factory=list)  # why it differs, when it does

    def matched(self) -> bool:
        return bool(self.result == "succeeded" and self.phi_csv_equal and self.phi_parquet_equal
                    and self.rows_equal)


@dataclass
class Soak:
    args: argparse.Namespace
    hint: Hint
    started: float
    deadline: float
    rng: random.Random
    coordinator: Coordinator | None = None
    workers: list[Worker] = field(default_factory=list)
    kills: list[tuple[float, str, str, str]] = field(default_factory=list)  # (t, who, job, stage)
    worker_restarts: int = 0
    coordinator_restarts: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    rss_peak_kib: int = 0
    next_worker_kill: float = 0.0
    next_coordinator_kill: float = float("inf")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def draw(self, bounds: tuple[float, float]) -> float:
        return self.rng.uniform(*bounds)

    def logs(self) -> Path:
        return self.args.dir / "logs"

    # -- chaos --------------------------------------------------------------------------
    def tick(self, job: str, status_text: str, record: JobRecord | None) -> None:
        """Runs what is due: worker restarts, then kills; notes workers that died unasked."""
        now = time.monotonic()
        for w in self.workers:
            if w.proc is not None and w.restart_at is None and w.proc.poll() is not None:
                # Not killed by us: a crash (or an exit) is a finding; start it again.
                self.unexpected_exits.append(
                    f"{w.name} (start {w.starts}) exited by itself with {w.proc.returncode} "
                    f"at {self.elapsed():.1f} s during {job or 'no job'}: "
                    + log_tail(self.logs() / f"{w.name}-{w.starts}.log"))
                w.restart_at = now
            if w.restart_at is not None and now >= w.restart_at:
                start_worker(self.hint, w, self.coordinator.url, self.logs())
                self.worker_restarts += 1
        if now >= self.next_worker_kill:
            live = [w for w in self.workers if w.alive()]
            # Drawn whether or not a kill happens, so the schedule depends on the seed only.
            pick = self.rng.randrange(len(self.workers))
            down = self.draw(self.args.restart_after)
            self.next_worker_kill = now + self.draw(self.args.kill_every)
            target = self.workers[pick]
            if len(live) >= 2 and target.alive():
                kill9(target.proc)
                target.restart_at = now + down
                self.kills.append((self.elapsed(), target.name, job, current_stage(status_text)))
                if record is not None:
                    record.worker_kills += 1
        if now >= self.next_coordinator_kill:
            self.next_coordinator_kill = now + self.draw(self.args.coordinator_kill_every)
            self.coordinator.kill()
            self.kills.append((self.elapsed(), "coordinator", job, current_stage(status_text)))
            if record is not None:
                record.coordinator_kills += 1
            self.coordinator.start()  # same state, same address: workers reconnect
            self.coordinator_restarts += 1

    def sample_peak(self) -> None:
        rss = self.coordinator.rss()
        if rss is not None:
            self.rss_peak_kib = max(self.rss_peak_kib, rss)

    def status(self, job: str) -> str:
        out = self.hint.run("status", job, "--coordinator", self.coordinator.url, timeout=20, check=False)
        return out.stdout if out.returncode == 0 else ""

    # -- one job ------------------------------------------------------------------------
    def run_job(self, record: JobRecord, spec: Path, reference: Outcome, storage: Path) -> None:
        t0 = time.monotonic()
        job = ""
        # A submit can meet a coordinator being restarted: retry briefly.
        for _ in range(50):
            self.tick("", "", record)
            out = self.hint.run("submit", str(spec), "--coordinator", self.coordinator.url,
                                timeout=60, check=False)
            if out.returncode == 0:
                job = out.stdout.strip()
                break
            time.sleep(0.2)
        if not job:
            record.result, record.note = "submit failed", out.stderr.strip()[-300:]
            return
        record.job_id = job
        text = ""
        while True:
            self.tick(job, text, record)
            self.sample_peak()
            new = self.status(job)
            text = new or text
            ended = phase(new)
            if ended:
                record.result = ended
                if ended != "succeeded":
                    record.note = new.strip().replace("\n", " | ")[-400:]
                break
            if time.monotonic() >= self.deadline:
                self.hint.run("cancel", job, "--coordinator", self.coordinator.url, check=False)
                record.result = "unfinished"
                record.note = "the time budget ran out; cancelled"
                break
            if time.monotonic() - t0 > self.args.job_timeout:
                record.result = "timed out"
                record.note = f"not ended after {self.args.job_timeout:.0f} s: " + \
                    text.strip().replace("\n", " | ")[-400:]
                self.hint.run("cancel", job, "--coordinator", self.coordinator.url, check=False)
                break
            time.sleep(0.2)
        record.seconds = time.monotonic() - t0
        record.rss_kib = self.coordinator.rss()
        record.incarnation = self.coordinator.incarnation
        if record.result == "succeeded":
            got = outcome(storage / job)
            record.phi_csv_equal = got.phi_csv == reference.phi_csv
            record.phi_parquet_equal = same_parquet(got.phi_parquet, reference.phi_parquet)
            record.rows = got.rows
            record.rows_equal = got.rows == reference.rows
            if not record.matched():
                record.details = differences(storage / job, got, reference)


def phi_concepts(phi_csv: bytes) -> dict[str, int]:
    """Rows of phi.csv per `concept,concept_name`."""
    counts: dict[str, int] = {}
    for line in phi_csv.decode().splitlines()[1:]:
        key = ",".join(line.split(",")[:2])
        counts[key] = counts.get(key, 0) + 1
    return counts


def differences(job_dir: Path, got: Outcome, reference: Outcome) -> list[str]:
    """What differs from the reference, and what job.json says about quarantined tasks."""
    import json

    lines = []
    mine, theirs = phi_concepts(got.phi_csv), phi_concepts(reference.phi_csv)
    missing = [c for c in theirs if c not in mine]
    extra = [c for c in mine if c not in theirs]
    lines.append(f"phi.csv: {sum(mine.values())} rows against the reference's {sum(theirs.values())}"
                 + (f"; concepts missing: {' '.join(missing)}" if missing else "")
                 + (f"; concepts not in the reference: {' '.join(extra)}" if extra else ""))
    if not missing and not extra:
        ref_lines = set(reference.phi_csv.decode().splitlines())
        changed = [l for l in got.phi_csv.decode().splitlines() if l not in ref_lines]
        lines.append(f"  {len(changed)} rows differ, first: {changed[:1]}")
    if got.rows != reference.rows:
        lines.append(f"region rows (rows, distinct positions): {got.rows} against {reference.rows}")
    try:
        job = json.loads((job_dir / "results" / "job.json").read_text())
        for q in job.get("quarantined_tasks", []):
            lines.append(f"quarantined: {q.get('task')} after {q.get('attempts')} attempts, last "
                         f"{q.get('reason')}: {q.get('message')}")
    except (OSError, ValueError) as e:
        lines.append(f"job.json unreadable: {e}")
    return lines


MARKER = ".hint-soak"


def prepare_dir(d: Path) -> None:
    """Empties --dir for a fresh soak: only a directory an earlier soak made (it holds the
    marker file) or an empty one, never anything else a mistyped --dir could name."""
    if d.exists():
        if not d.is_dir() or (any(d.iterdir()) and not (d / MARKER).exists()):
            raise SetupError(f"{d} exists and is not a soak's directory (no {MARKER} in it): "
                             "give a new or empty --dir")
        shutil.rmtree(d)
    (d / "logs").mkdir(parents=True)
    (d / MARKER).write_text("made by scripts/soak.py; emptied by the next soak in this directory\n")


def make_world(hint: Hint, args: argparse.Namespace) -> Path:
    """World, model and spec under --dir; returns the spec's path."""
    d = args.dir
    hint.run("synth", "--out", str(d / "world"), "--seed", "3", "--per-class", str(args.per_class))
    # `hint train-model` runs in hint-worker; one thread on a shared machine.
    hint.run("train-model", "--images", str(d / "world" / "images"), "--out",
             str(d / "tiny_cnn.safetensors"), "--epochs", "5", "--threads", "1")
    return d


def write_spec(d: Path, storage: Path, args: argparse.Namespace, name: str) -> Path:
    spec = d / name
    spec.write_text(SPEC.format(
        seed=7, weights=d / "tiny_cnn.safetensors", images=d / "world" / "images",
        hierarchy=d / "world" / "hierarchy.yaml", images_per_task=args.images_per_task,
        permutations=args.permutations, storage=storage, max_attempts=args.max_attempts))
    return spec


def reference_run(hint: Hint, args: argparse.Namespace, deadline: float) -> tuple[Outcome, float]:
    """The spec on its own coordinator with one worker, undisturbed."""
    d = args.dir
    spec = write_spec(d, d / "reference-runs", args, "reference.toml")
    coordinator = Coordinator(hint, d / "reference-state", args.lease_timeout, d / "logs")
    coordinator.start()
    worker = Worker("ref0")
    start_worker(hint, worker, coordinator.url, d / "logs")
    t0 = time.monotonic()
    try:
        job = hint.run("submit", str(spec), "--coordinator", coordinator.url).stdout.strip()
        while True:
            text = hint.run("status", job, "--coordinator", coordinator.url, check=False).stdout
            ended = phase(text)
            if ended == "succeeded":
                break
            if ended:
                raise SetupError(f"the reference job {ended}:\n{text}")
            if not worker.alive():
                raise SetupError(f"the reference worker exited ({worker.proc.returncode}): "
                                 + log_tail(d / "logs" / "ref0-1.log"))
            if time.monotonic() > deadline:
                raise SetupError(f"the time budget ran out during the reference run:\n{text}")
            time.sleep(0.2)
        return outcome(d / "reference-runs" / job), time.monotonic() - t0
    finally:
        kill9(worker.proc)
        coordinator.kill()


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def replayed_rss(hint: Hint, args: argparse.Namespace, incarnation: int) -> int | None:
    """RSS of a coordinator started on the soak's state once it answers: the memory the
    jobs' durable state takes, apart from whatever the long-running one accumulated."""
    coordinator = Coordinator(hint, args.dir / "state", args.lease_timeout, args.dir / "logs",
                              incarnation=incarnation)
    try:
        coordinator.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if hint.run("status", "--coordinator", coordinator.url, timeout=20, check=False).returncode == 0:
                return coordinator.rss()
            time.sleep(0.2)
        return None
    except SetupError:
        return None
    finally:
        coordinator.kill()


def job_line(r: JobRecord) -> str:
    """One job's line: result, time, kills during it, the three checks, RSS after it."""

    def mark(equal: bool | None) -> str:
        return "-" if equal is None else "=" if equal else "≠"

    verdict = "ok" if r.matched() else "MISMATCH" if r.result == "succeeded" else r.result.upper()
    return (f"job {r.number:>3} {r.job_id:<9} {r.result:<10} {r.seconds:6.1f} s  "
            f"kills {r.worker_kills}w/{r.coordinator_kills}c  phi.csv {mark(r.phi_csv_equal)} "
            f"parquet {mark(r.phi_parquet_equal)} rows {mark(r.rows_equal)}  "
            f"RSS {mib(r.rss_kib)} MiB  {verdict}" + (f"  {r.note}" if r.note else ""))


def mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f}"


def memory_verdict(records: list[JobRecord], args: argparse.Namespace) -> tuple[bool, list[str]]:
    sampled = [(r.number, r.rss_kib) for r in records if r.rss_kib is not None]
    incarnations = [r.incarnation for r in records if r.rss_kib is not None]
    lines = []
    if not sampled:
        return True, ["memory: no sample"]
    values = [v for _, v in sampled]
    lines.append(f"coordinator RSS after each job (MiB): first {mib(values[0])}, last {mib(values[-1])}, "
                 f"max {mib(max(values))}, min {mib(min(values))}")
    series = []
    for k, v in enumerate(values):
        if k and incarnations[k] != incarnations[k - 1]:
            series.append("|")  # the coordinator was restarted in between
        series.append(mib(v))
    lines.append("  series (| = coordinator restarted): " + " ".join(series))
    warm = [v for n, v in sampled if n <= args.warmup_jobs]
    after = [(n, v) for n, v in sampled if n > args.warmup_jobs]
    if not warm or not after:
        lines.append(f"memory rule not applied: need samples from both the {args.warmup_jobs} warm-up "
                     "jobs and later jobs")
        return True, lines
    base = max(warm)
    limit = base * (1 + args.rss_tolerance_percent / 100) + args.rss_tolerance_mib * 1024
    worst_n, worst = max(after, key=lambda s: s[1])
    if len(after) >= 2:
        xs = [n for n, _ in after]
        mx, my = sum(xs) / len(xs), sum(v for _, v in after) / len(after)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (v - my) for x, v in after) / sxx if sxx else 0.0
        lines.append(f"  slope after warm-up: {slope:+.1f} KiB/job (reported, not judged)")
    flat = worst <= limit
    lines.append(f"memory rule: after the first {args.warmup_jobs} jobs every sample <= warm-up max "
                 f"{mib(base)} MiB × (1 + {args.rss_tolerance_percent:g}%) + {args.rss_tolerance_mib:g} MiB "
                 f"= {mib(int(limit))} MiB; largest later sample {mib(worst)} MiB (job {worst_n}): "
                 + ("FLAT" if flat else "GREW"))
    return flat, lines


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    deadline = started + args.minutes * 60
    args.dir = args.dir.resolve()
    prepare_dir(args.dir)
    hint = Hint(args.bin_dir.resolve())
    try:
        import pyarrow  # noqa: F401 (the checks read Parquet)
    except ImportError:
        raise SetupError("pyarrow is missing: run with the project's .venv/bin/python (make bootstrap)")
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(hint.hint.stat().st_mtime))
    say(f"soak: {args.jobs} jobs, {args.workers} workers, seed {args.seed}, budget {args.minutes:g} min, "
        f"dir {args.dir}")
    say(f"  worker kills every {args.kill_every[0]:g}–{args.kill_every[1]:g} s, down "
        f"{args.restart_after[0]:g}–{args.restart_after[1]:g} s; coordinator kills: "
        + (f"every {args.coordinator_kill_every[0]:g}–{args.coordinator_kill_every[1]:g} s"
           if args.kill_coordinator else "off"))
    say(f"  binaries: {hint.hint.parent} (hint built {built}); world {args.per_class} images per class, "
        f"{args.images_per_task} per extract task, {args.permutations} permutations per concept")
    make_world(hint, args)
    say(f"world and model ready ({time.monotonic() - started:.1f} s)")
    reference, ref_seconds = reference_run(hint, args, deadline)
    say(f"reference (1 worker, undisturbed): {ref_seconds:.1f} s, {len(reference.phi_csv)} bytes of phi.csv, "
        f"{reference.rows[0]} region rows")

    storage = args.dir / "runs"
    spec = write_spec(args.dir, storage, args, "job.toml")
    soak = Soak(args, hint, started, deadline, random.Random(args.seed))
    soak.coordinator = Coordinator(hint, args.dir / "state", args.lease_timeout, soak.logs())
    soak.coordinator.start()
    soak.workers = [Worker(f"w{k}") for k in range(args.workers)]
    for w in soak.workers:
        start_worker(hint, w, soak.coordinator.url, soak.logs())
    soak_start = time.monotonic()
    time.sleep(1.0)
    rss_before = soak.coordinator.rss()
    soak.next_worker_kill = soak_start + soak.draw(args.kill_every)
    if args.kill_coordinator:
        soak.next_coordinator_kill = soak_start + soak.draw(args.coordinator_kill_every)

    records: list[JobRecord] = []
    try:
        for n in range(1, args.jobs + 1):
            if time.monotonic() >= deadline:
                break
            record = JobRecord(n)
            records.append(record)
            soak.run_job(record, spec, reference, storage)
            say(job_line(record))
            if record.result == "unfinished":
                break
    finally:
        for w in soak.workers:
            if w.proc is not None:
                kill9(w.proc)
        soak.coordinator.kill()

    replayed = replayed_rss(hint, args, soak.coordinator.incarnation) if records else None

    finished = [r for r in records if r.result != "unfinished"]
    matched = [r for r in finished if r.matched()]
    flat, memory_lines = memory_verdict(records, args)
    worker_kills = [k for k in soak.kills if k[1] != "coordinator"]
    coordinator_kills = [k for k in soak.kills if k[1] == "coordinator"]
    stages: dict[str, int] = {}
    for _, _, job, stage in worker_kills:
        key = stage if job else "between jobs"
        stages[key] = stages.get(key, 0) + 1
    ok = len(matched) == len(finished) and flat and not soak.unexpected_exits

    say("")
    say("== soak summary ==")
    ended_early = ""
    if len(records) > len(finished):
        ended_early = f"; the budget ran out during job {len(records)}, cancelled"
    elif len(records) < args.jobs:
        ended_early = f"; the budget ran out before job {len(records) + 1}"
    say(f"jobs: {len(finished)} finished of {args.jobs} requested{ended_early}")
    say(f"  matched the reference (phi.csv, phi.parquet, region rows): {len(matched)}/{len(finished)}")
    for r in finished:
        if not r.matched():
            say(f"  job {r.number} ({r.job_id or 'not submitted'}): {r.result}; phi.csv equal "
                f"{r.phi_csv_equal}, phi.parquet equal {r.phi_parquet_equal}, region rows equal "
                f"{r.rows_equal}. {r.note}".rstrip())
            for line in r.details:
                say(f"    {line}")
    say(f"worker kills (SIGKILL): {len(worker_kills)}, by the job's stage at that moment: "
        + (", ".join(f"{s} {c}" for s, c in sorted(stages.items())) or "none"))
    say(f"worker restarts: {soak.worker_restarts}; coordinator kills (SIGKILL): "
        f"{len(coordinator_kills)}, restarts: {soak.coordinator_restarts}")
    if soak.unexpected_exits:
        say("workers that exited unasked:")
        for line in soak.unexpected_exits:
            say(f"  {line}")
    for line in memory_lines:
        say(line)
    say(f"  peak coordinator RSS seen while polling: {mib(soak.rss_peak_kib)} MiB; before the first "
        f"job {mib(rss_before)} MiB; a coordinator started afterwards on the soak's state "
        f"(replaying {len(records)} jobs): {mib(replayed)} MiB")
    times = [r.seconds for r in finished if r.result == "succeeded"]
    if times:
        say(f"job time: mean {sum(times) / len(times):.1f} s, max {max(times):.1f} s "
            f"(reference, 1 worker undisturbed: {ref_seconds:.1f} s)")
    say(f"elapsed: {soak.elapsed() / 60:.1f} min of {args.minutes:g}; seed {args.seed}; "
        f"logs in {soak.logs()}")
    say("RESULT: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as e:
        print(f"soak: setup failed: {e}", file=sys.stderr)
        sys.exit(2)
