//! The distributed runtime across real processes on 127.0.0.1: a `hint coordinator` and
//! `hint-worker` processes run whole jobs on a small synthetic world.
//!
//! - 3 workers give the bit-identical Φ (and the same region rows) of 1 worker;
//! - kill -9 of a worker during extraction and of another during Shapley: the job completes,
//!   Φ bit-identical, region rows exactly the undisturbed run's (none lost, none doubled);
//! - kill -9 of the coordinator mid-job, restarted on its state directory: it resumes and
//!   finishes with the bit-identical Φ;
//! - SIGTERM drains a worker; no worker fails a job after the grace period; bad input is
//!   quarantined at once and named; a cancelled job stops and its worker runs the next.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{hint, hint_bin, hint_command, run_python, succeeded};

/// Seconds a lease lives without a heartbeat in these tests (short, so a killed worker's
/// tasks come back quickly).
const LEASE_SECONDS: &str = "3";

/// The synthetic world and a briefly trained tiny CNN, made once for the whole binary.
fn world() -> &'static Path {
    static WORLD: OnceLock<tempfile::TempDir> = OnceLock::new();
    WORLD
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let world = dir.path().join("world");
            succeeded(
                &hint(&[
                    "synth",
                    "--out",
                    world.to_str().unwrap(),
                    "--seed",
                    "3",
                    "--per-class",
                    "24",
                ]),
                "hint synth",
            );
            let weights = dir.path().join("tiny_cnn.safetensors");
            succeeded(
                &hint(&[
                    "train-model",
                    "--images",
                    world.join("images").to_str().unwrap(),
                    "--out",
                    weights.to_str().unwrap(),
                    "--epochs",
                    "3",
                ]),
                "hint train-model",
            );
            dir
        })
        .path()
}

/// A job spec over the world whose results go under `storage`. Integrated gradients (16
/// steps) make the extraction slow enough to kill a worker in the middle of it.
fn write_spec(dir: &Path, storage: &Path) -> PathBuf {
    let world = world();
    let spec = format!(
        r#"
[job]
name = "cluster-test"
seed = 7

[model]
architecture = "tiny_cnn"
weights = "{weights}"
layer = "features.7"

[data]
images = "{images}"
hierarchy = "{hierarchy}"

[extract]
method = "integrated_gradients"
steps = 16
background_ratio = 0.25
batch_size = 8
images_per_task = 16

[classify]
concepts_per_task = 4

[shapley]
permutations = 96
permutations_per_task = 8

[storage]
root = "{storage}"
"#,
        weights = world.join("tiny_cnn.safetensors").display(),
        images = world.join("world/images").display(),
        hierarchy = world.join("world/hierarchy.yaml").display(),
        storage = storage.display(),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, spec).expect("writing the spec");
    path
}

/// A child process killed when dropped (a failing test leaves nothing running).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// kill -9.
    fn kill_hard(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaping");
    }
}

struct Coordinator {
    process: Process,
    url: String,
}

fn start_coordinator(state: &Path, listen: &str) -> Coordinator {
    let address_file = state.with_extension("address");
    let _ = std::fs::remove_file(&address_file);
    let child = hint_command()
        .args([
            "coordinator",
            "--listen",
            listen,
            "--lease-timeout-seconds",
            LEASE_SECONDS,
        ])
        .arg("--state")
        .arg(state)
        .arg("--address-file")
        .arg(&address_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("starting hint coordinator");
    let process = Process(child);
    let start = Instant::now();
    loop {
        if let Ok(url) = std::fs::read_to_string(&address_file) {
            return Coordinator { process, url };
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the coordinator did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_worker(url: &str, name: &str) -> Process {
    let bin = hint_bin().with_file_name("hint-worker");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build -p hint-worker`",
        bin.display()
    );
    let child = Command::new(bin)
        .args([
            "--coordinator",
            url,
            "--device",
            "cpu",
            "--name",
            name,
            "--decode-threads",
            "1",
        ])
        .env("OMP_WAIT_POLICY", "passive")
        .env("OMP_NUM_THREADS", "1")
        .env("HINT_LOG", "error")
        .spawn()
        .expect("starting hint-worker");
    Process(child)
}

fn submit(url: &str, spec: &Path) -> String {
    let out = succeeded(
        &hint(&["submit", spec.to_str().unwrap(), "--coordinator", url]),
        "hint submit",
    );
    out.trim().to_string()
}

/// `hint status JOB` as text (see `describe`).
fn status(url: &str, job: &str) -> String {
    let output = hint(&["status", job, "--coordinator", url]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// (done, total, running) of a stage in a status text.
fn stage(text: &str, name: &str) -> (u64, u64, u64) {
    let Some(line) = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{name} ")))
    else {
        return (0, 0, 0);
    };
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (numbers[0], numbers[1], numbers[2])
}

/// Polls the status until `ready` holds (or panics after a minute).
fn wait_for(url: &str, job: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = status(url, job);
        if ready(&text) {
            return text;
        }
        assert!(
            !text.contains(": failed") && !text.contains(": succeeded"),
            "the job ended while waiting for {what}:\n{text}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "timed out waiting for {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_succeeded(url: &str, job: &str) -> String {
    let start = Instant::now();
    loop {
        let text = status(url, job);
        if text.contains(": succeeded") {
            return text;
        }
        assert!(
            !text.contains(": failed") && !text.contains(": cancelled"),
            "the job did not succeed:\n{text}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the job did not finish:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Φ as written (CSV prints every f64 exactly), and the region rows: (rows, distinct
/// (image, y, x) positions).
fn outcome(storage: &Path, job: &str) -> (Vec<u8>, String) {
    let job_dir = storage.join(job);
    let phi = std::fs::read(job_dir.join("results/phi.csv")).expect("phi.csv");
    let rows = run_python("region_rows.py", &[job_dir.join("regions").as_os_str()]);
    (phi, rows.trim().to_string())
}

/// One worker, undisturbed: the reference every other run must equal.
fn reference() -> &'static (Vec<u8>, String) {
    static REFERENCE: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = dir.path().join("runs");
        let spec = write_spec(dir.path(), &storage);
        let coordinator = start_coordinator(&dir.path().join("state"), "127.0.0.1:0");
        let _worker = start_worker(&coordinator.url, "only");
        let job = submit(&coordinator.url, &spec);
        wait_succeeded(&coordinator.url, &job);
        outcome(&storage, &job)
    })
}

#[test]
fn three_workers_give_the_one_worker_phi_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("runs");
    let spec = write_spec(dir.path(), &storage);
    let coordinator = start_coordinator(&dir.path().join("state"), "127.0.0.1:0");
    let _workers: Vec<Process> = (0..3)
        .map(|k| start_worker(&coordinator.url, &format!("w{k}")))
        .collect();
    let job = submit(&coordinator.url, &spec);
    let text = wait_succeeded(&coordinator.url, &job);
    assert!(text.contains("3 live worker(s)"), "{text}");
    let (phi, rows) = outcome(&storage, &job);
    let (reference_phi, reference_rows) = reference();
    assert_eq!(
        &rows, reference_rows,
        "region rows differ from the 1-worker run"
    );
    assert!(phi == *reference_phi, "Φ differs from the 1-worker run");
    // The client commands see the finished job.
    let results = succeeded(
        &hint(&["results", &job, "--coordinator", &coordinator.url]),
        "hint results",
    );
    for file in [
        "phi.parquet",
        "phi.csv",
        "top_neurons.csv",
        "multimodal.csv",
        "concepts.json",
        "job.json",
    ] {
        assert!(results.contains(file), "{file} missing from:\n{results}");
    }
}

#[test]
fn workers_killed_during_extraction_and_shapley_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("runs");
    let spec = write_spec(dir.path(), &storage);
    let coordinator = start_coordinator(&dir.path().join("state"), "127.0.0.1:0");
    let mut workers: Vec<Process> = (0..3)
        .map(|k| start_worker(&coordinator.url, &format!("w{k}")))
        .collect();
    let job = submit(&coordinator.url, &spec);
    let url = &coordinator.url;
    wait_for(url, &job, "extraction under way", |t| {
        let (done, total, running) = stage(t, "extract");
        running >= 3 && done >= 1 && done + 3 < total
    });
    workers[0].kill_hard();
    wait_for(url, &job, "Shapley under way", |t| {
        let (done, total, running) = stage(t, "shapley");
        running >= 1 && done >= 1 && done + 2 < total
    });
    workers[1].kill_hard();
    let text = wait_succeeded(url, &job);
    assert!(text.contains("1 live worker(s)"), "{text}");
    let (phi, rows) = outcome(&storage, &job);
    let (reference_phi, reference_rows) = reference();
    assert_eq!(
        &rows, reference_rows,
        "region rows differ from the undisturbed run"
    );
    assert!(phi == *reference_phi, "Φ differs from the undisturbed run");
    // The killed workers' attempts were retried: the journal shows failures of lost workers.
    let journal = std::fs::read_to_string(dir.path().join("state/journal.log")).unwrap();
    assert!(
        journal.contains("WORKER_LOST"),
        "no lost-worker failure recorded"
    );
}

#[test]
fn a_coordinator_killed_mid_job_resumes_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("runs");
    let state = dir.path().join("state");
    let spec = write_spec(dir.path(), &storage);
    let mut coordinator = start_coordinator(&state, "127.0.0.1:0");
    let url = coordinator.url.clone();
    let _workers: Vec<Process> = (0..2)
        .map(|k| start_worker(&url, &format!("w{k}")))
        .collect();
    let job = submit(&url, &spec);
    wait_for(&url, &job, "Shapley under way", |t| {
        let (done, total, _) = stage(t, "shapley");
        done >= 1 && done + 4 < total
    });
    coordinator.process.kill_hard();
    // Same address, same state: the workers reconnect and register again.
    let listen = url.trim_start_matches("http://").to_string();
    let restarted = start_coordinator(&state, &listen);
    let text = wait_succeeded(&restarted.url, &job);
    assert!(text.contains(&job), "{text}");
    let (phi, rows) = outcome(&storage, &job);
    let (reference_phi, reference_rows) = reference();
    assert_eq!(
        &rows, reference_rows,
        "region rows differ from the undisturbed run"
    );
    assert!(phi == *reference_phi, "Φ differs from the undisturbed run");
    let journal = std::fs::read_to_string(state.join("journal.log")).unwrap();
    assert!(
        journal.contains(r#""incarnation":2"#),
        "the restart did not resume the journal"
    );
}

#[test]
fn a_worker_told_to_stop_finishes_its_task_and_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("runs");
    let spec = write_spec(dir.path(), &storage);
    let coordinator = start_coordinator(&dir.path().join("state"), "127.0.0.1:0");
    let url = &coordinator.url;
    let mut leaving = start_worker(url, "leaving");
    let _staying = start_worker(url, "staying");
    let job = submit(url, &spec);
    wait_for(url, &job, "extraction under way", |t| {
        let (done, total, running) = stage(t, "extract");
        running >= 2 && done + 2 < total
    });
    let pid = leaving.0.id().to_string();
    succeeded(
        &Command::new("kill").args(["-TERM", &pid]).output().unwrap(),
        "kill -TERM",
    );
    let start = Instant::now();
    let exit = loop {
        if let Some(status) = leaving.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the worker did not drain and exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "a drained worker exits cleanly, got {exit}");
    let text = wait_succeeded(url, &job);
    assert!(
        text.contains("1 live worker(s)"),
        "the drained worker should have left:\n{text}"
    );
    let (phi, rows) = outcome(&storage, &job);
    let (reference_phi, reference_rows) = reference();
    assert_eq!(&rows, reference_rows);
    assert!(phi == *reference_phi, "Φ differs from the undisturbed run");
}

#[test]
fn a_job_without_workers_fails_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), &dir.path().join("runs"));
    let address = dir.path().join("address");
    let child = hint_command()
        .args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--worker-grace-seconds",
            "1",
        ])
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--address-file")
        .arg(&address)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _coordinator = Process(child);
    let start = Instant::now();
    while !address.exists() {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = std::fs::read_to_string(&address).unwrap();
    let job = submit(&url, &spec);
    let start = Instant::now();
    let text = loop {
        let text = status(&url, &job);
        if text.contains(": failed") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job did not fail:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(text.contains("no worker was seen for 1 s"), "{text}");
}

#[test]
fn bad_input_is_quarantined_at_once_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("runs");
    // The job's own copy of the weights, removed after the spec was accepted: every extract
    // task then fails with bad input, which is never retried.
    let weights = dir.path().join("weights.safetensors");
    std::fs::copy(world().join("tiny_cnn.safetensors"), &weights).unwrap();
    let spec = write_spec(dir.path(), &storage);
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        &world().join("tiny_cnn.safetensors").display().to_string(),
        &weights.display().to_string(),
    );
    std::fs::write(&spec, text).unwrap();
    let coordinator = start_coordinator(&dir.path().join("state"), "127.0.0.1:0");
    let job = submit(&coordinator.url, &spec);
    std::fs::remove_file(&weights).unwrap();
    let _worker = start_worker(&coordinator.url, "only");
    let start = Instant::now();
    let text = loop {
        let text = status(&coordinator.url, &job);
        if text.contains(": failed") {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the job did not fail:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        text.contains("every extract task was quarantined"),
        "{text}"
    );
    assert!(
        text.contains("quarantined job-0001/extract-00000 after 1 attempt(s): BAD_INPUT"),
        "{text}"
    );
    assert!(
        text.contains("weights.safetensors"),
        "the reason names the file:\n{text}"
    );
}

#[test]
fn a_cancelled_job_stops_and_its_worker_runs_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("runs");
    let spec = write_spec(dir.path(), &storage);
    let coordinator = start_coordinator(&dir.path().join("state"), "127.0.0.1:0");
    let url = &coordinator.url;
    let _worker = start_worker(url, "only");
    let job = submit(url, &spec);
    wait_for(url, &job, "extraction under way", |t| {
        stage(t, "extract").2 >= 1
    });
    let out = succeeded(
        &hint(&["cancel", &job, "--coordinator", url]),
        "hint cancel",
    );
    assert!(out.contains("cancelled"), "{out}");
    let text = status(url, &job);
    assert!(text.contains(": cancelled"), "{text}");
    assert!(text.contains("cancelled by a client"), "{text}");
    let committed =
        |job: &str| std::fs::read_dir(storage.join(job).join("regions")).map_or(0, |d| d.count());
    let before = committed(&job);
    // The worker is told to drop the task, stays registered and runs the next job.
    let next = submit(url, &spec);
    wait_succeeded(url, &next);
    assert_eq!(
        committed(&job),
        before,
        "a cancelled job committed more work"
    );
    assert!(
        !storage.join(&job).join("results").exists(),
        "a cancelled job has no results"
    );
    assert!(status(url, &job).contains(": cancelled"));
}
