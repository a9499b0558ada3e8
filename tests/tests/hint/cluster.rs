//! The distributed runtime across real processes on 127.0.0.1: a `hint coordinator` and
//! `hint-worker` processes run whole jobs on a small synthetic world.
//!
//! - 3 workers give the bit-identical Φ (and the same region rows) of 1 worker;
//! - kill -9 of a worker during extraction and of another during Shapley: the job completes,
//!   Φ bit-identical, region rows exactly the undisturbed run's (none lost, none doubled);
//! - kill -9 of the coordinator mid-job, restarted on its state directory: it resumes and
//!   finishes with the bit-identical Φ;
//! - SIGTERM drains a worker; no worker fails a job after the grace period; bad input is
//!   quarantined at once and named; a cancelled job stops and its worker runs the next;
//! - `[evaluate]` and `[ablate]` run as leased stages: 2 workers under a coordinator write
//!   the same wsol.json, heatmaps and ablation.json as `hint run` with 1 worker.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::{hint, hint_bin, hint_command, run_python, succeeded, TinyWorld};

/// Seconds a lease lives without a heartbeat in these tests (short, so a killed worker's
/// tasks come back quickly).
const LEASE_SECONDS: &str = "3";

/// The synthetic world and a briefly trained tiny CNN, made once for the whole binary.
fn world() -> &'static TinyWorld {
    static WORLD: OnceLock<(tempfile::TempDir, TinyWorld)> = OnceLock::new();
    let (_, world) = WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let world = TinyWorld::make(dir.path(), 3, 24, 3);
        (dir, world)
    });
    world
}

/// A job spec over the world whose results go under `storage`. Integrated gradients (16
/// steps) make the extraction slow enough to kill a worker in the middle of it.
fn write_spec(dir: &Path, storage: &Path) -> PathBuf {
    let spec = world().spec(
        "cluster-test",
        7,
        storage,
        r#"[extract]
method = "integrated_gradients"
steps = 16
background_ratio = 0.25
batch_size = 8
images_per_task = 16

[classify]
concepts_per_task = 4

[shapley]
permutations = 96
permutations_per_task = 8"#,
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

/// `hint coordinator` on `listen` (port 0: any) over `state`, with `extra` flags.
fn start_coordinator(state: &Path, listen: &str, extra: &[&str]) -> Coordinator {
    start_coordinator_as(hint_command(), state, listen, extra)
}

/// `hint coordinator` unable to write any file past `kib` KiB (RLIMIT_FSIZE, SIGXFSZ
/// ignored, so a write past it fails with EFBIG, as on a full disk); its stderr goes to
/// `<state>.stderr`.
fn start_coordinator_with_file_limit(state: &Path, listen: &str, kib: u64) -> Coordinator {
    let mut command = Command::new("bash");
    command
        .args(["-c", "ulimit -f \"$0\"; trap '' XFSZ; exec \"$@\""])
        .arg(kib.to_string())
        .arg(hint_bin())
        .stderr(std::fs::File::create(state.with_extension("stderr")).unwrap());
    start_coordinator_as(command, state, listen, &[])
}

fn start_coordinator_as(
    mut command: Command,
    state: &Path,
    listen: &str,
    extra: &[&str],
) -> Coordinator {
    let address_file = state.with_extension("address");
    let _ = std::fs::remove_file(&address_file);
    let child = command
        .args([
            "coordinator",
            "--listen",
            listen,
            "--lease-timeout-seconds",
            LEASE_SECONDS,
        ])
        .args(["--http-listen", "127.0.0.1:0", "--http-address-file"])
        .arg(state.with_extension("http"))
        .args(extra)
        .env("HINT_LOG", "error")
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

/// The body of `GET path` from the coordinator's HTTP side (plain HTTP/1.1 over a socket).
fn http_get(state: &Path, path: &str) -> String {
    use std::io::{Read, Write};
    let address = std::fs::read_to_string(state.with_extension("http")).expect("http address");
    let host = address.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).expect("connecting to the HTTP side");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}

/// The value of one metric line (`name{labels} value`) in a Prometheus exposition.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Whether a status text is of an ended job.
fn ended(text: &str) -> bool {
    [": succeeded", ": failed", ": cancelled"]
        .iter()
        .any(|phase| text.contains(phase))
}

/// Polls the status until `ready` holds; panics if the job ends otherwise, or after 5 minutes.
fn wait_until(url: &str, job: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = status(url, job);
        if ready(&text) {
            return text;
        }
        assert!(
            !ended(&text),
            "the job ended while waiting for {what}:\n{text}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_succeeded(url: &str, job: &str) -> String {
    wait_until(url, job, "success", |t| t.contains(": succeeded"))
}

fn wait_failed(url: &str, job: &str) -> String {
    wait_until(url, job, "failure", |t| t.contains(": failed"))
}

/// Φ as written (CSV prints every f64 exactly), and the region rows: (rows, distinct
/// (image, y, x) positions).
fn outcome(storage: &Path, job: &str) -> (Vec<u8>, String) {
    let job_dir = storage.join(job);
    let phi = std::fs::read(job_dir.join("results/phi.csv")).expect("phi.csv");
    let rows = run_python("region_rows.py", &[job_dir.join("regions").as_os_str()]);
    (phi, rows.trim().to_string())
}

/// A coordinator with `workers` workers and the test job's spec in a temporary directory.
struct Cluster {
    dir: tempfile::TempDir,
    spec: PathBuf,
    coordinator: Coordinator,
    workers: Vec<Process>,
}

impl Cluster {
    fn start(workers: usize, coordinator_flags: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = write_spec(dir.path(), &dir.path().join("runs"));
        let coordinator =
            start_coordinator(&dir.path().join("state"), "127.0.0.1:0", coordinator_flags);
        let workers = (0..workers)
            .map(|k| start_worker(&coordinator.url, &format!("w{k}")))
            .collect();
        Cluster {
            dir,
            spec,
            coordinator,
            workers,
        }
    }

    fn url(&self) -> &str {
        &self.coordinator.url
    }

    fn submit(&self) -> String {
        submit(self.url(), &self.spec)
    }

    fn storage(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The journal: its snapshot, then its segments in order (under the default threshold
    /// no snapshot is taken, so the segments hold every record).
    fn journal(&self) -> String {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(self.state())
            .expect("state directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("journal-") || n.starts_with("snapshot-")
                })
            })
            .collect();
        // `snapshot-N` sorts after `journal-M`: put it first.
        segments.sort_by_key(|p| (!p.to_string_lossy().contains("snapshot-"), p.clone()));
        assert!(!segments.is_empty(), "no journal segment");
        segments
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("journal segment"))
            .collect()
    }

    /// The job's Φ and region rows equal the undisturbed 1-worker run's.
    fn assert_like_the_reference(&self, job: &str) {
        let (phi, rows) = outcome(&self.storage(), job);
        let (reference_phi, reference_rows) = reference();
        assert_eq!(
            &rows, reference_rows,
            "region rows differ from the undisturbed 1-worker run"
        );
        assert!(
            phi == *reference_phi,
            "Φ differs from the undisturbed 1-worker run"
        );
    }
}

/// One worker, undisturbed: the reference every other run must equal.
fn reference() -> &'static (Vec<u8>, String) {
    static REFERENCE: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let cluster = Cluster::start(1, &[]);
        let job = cluster.submit();
        wait_succeeded(cluster.url(), &job);
        outcome(&cluster.storage(), &job)
    })
}

#[test]
fn three_workers_give_the_one_worker_phi_bit_for_bit_and_metrics_show_the_run() {
    let cluster = Cluster::start(3, &[]);
    let job = cluster.submit();
    // Scraped during the run: Prometheus metrics and the status page. Workers register as
    // they start (each loads libtorch first; seconds on a loaded machine), so wait for all.
    wait_until(
        cluster.url(),
        &job,
        "extraction under way on 3 workers",
        |t| stage(t, "extract").2 >= 1 && t.contains("3 live worker(s)"),
    );
    let during = http_get(&cluster.state(), "/metrics");
    assert_eq!(metric(&during, "hint_live_workers"), 3.0, "{during}");
    assert!(metric(&during, r#"hint_tasks{kind="extract",state="running"}"#) >= 1.0);
    assert_eq!(metric(&during, r#"hint_jobs{phase="running"}"#), 1.0);
    let page = http_get(&cluster.state(), "/");
    assert!(
        page.contains(&job) && page.contains("live worker(s)"),
        "{page}"
    );
    let text = wait_succeeded(cluster.url(), &job);
    assert!(text.contains("3 live worker(s)"), "{text}");
    cluster.assert_like_the_reference(&job);
    // 12 region files: two sample parts of 8 and 4, then their merge, which train read.
    assert_eq!(stage(&text, "sample"), (3, 3, 0), "{text}");
    let samples = cluster.storage().join(&job).join("samples");
    let classify: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            cluster
                .storage()
                .join(&job)
                .join("classifiers/train-00000/classify.json"),
        )
        .expect("classify.json"),
    )
    .expect("JSON");
    assert_eq!(
        classify["samples"],
        serde_json::json!(samples.join("sample-00002"))
    );
    for part in ["sample-00000", "sample-00001", "sample-00002"] {
        for file in ["sample.parquet", "sample.json"] {
            assert!(samples.join(part).join(file).is_file(), "{part}/{file}");
        }
    }
    // pyarrow reads the merged sample as a region file: distinct rows, as many as it says.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(samples.join("sample-00002/sample.json")).expect("sample.json"),
    )
    .expect("JSON");
    let rows = run_python(
        "region_rows.py",
        &[samples.join("sample-00002/sample.parquet").as_os_str()],
    );
    let n = state["rows"].as_u64().expect("rows");
    assert!(n > 0);
    assert_eq!(rows.trim(), format!("{n} {n}"));
    let after = http_get(&cluster.state(), "/metrics");
    assert_eq!(metric(&after, "hint_images_total"), 192.0, "{after}");
    assert_eq!(
        metric(&after, r#"hint_task_completions_total{kind="extract"}"#),
        12.0
    );
    let (_, shapley_tasks, _) = stage(&text, "shapley");
    assert_eq!(
        metric(&after, r#"hint_task_completions_total{kind="shapley"}"#),
        shapley_tasks as f64
    );
    assert!(metric(&after, "hint_permutations_total") > 0.0);
    assert_eq!(metric(&after, r#"hint_jobs{phase="succeeded"}"#), 1.0);
    // The client commands see the finished job.
    let results = succeeded(
        &hint(&["results", &job, "--coordinator", cluster.url()]),
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
    let mut cluster = Cluster::start(3, &[]);
    let job = cluster.submit();
    let url = cluster.url().to_string();
    // Every worker holds an extract task: the one killed certainly loses a lease.
    wait_until(&url, &job, "extraction under way", |t| {
        let (done, total, running) = stage(t, "extract");
        running >= 3 && done >= 1 && done + 3 < total
    });
    cluster.workers[0].kill_hard();
    wait_until(&url, &job, "Shapley under way", |t| {
        let (done, total, running) = stage(t, "shapley");
        running >= 1 && done >= 1 && done + 2 < total
    });
    cluster.workers[1].kill_hard();
    let text = wait_succeeded(&url, &job);
    assert!(text.contains("1 live worker(s)"), "{text}");
    cluster.assert_like_the_reference(&job);
    // The killed workers' attempts were retried: the journal shows failures of lost workers.
    assert!(
        cluster.journal().contains("WORKER_LOST"),
        "no lost-worker failure recorded"
    );
}

/// With a snapshot threshold of a few records, the journal is compacted again and again
/// while the job runs, so the kill lands anywhere in or between snapshots.
#[test]
fn a_coordinator_killed_mid_job_resumes_on_restart() {
    let compact = ["--snapshot-bytes", "4096"];
    let mut cluster = Cluster::start(2, &compact);
    let job = cluster.submit();
    let url = cluster.url().to_string();
    wait_until(&url, &job, "Shapley under way", |t| {
        let (done, total, _) = stage(t, "shapley");
        done >= 1 && done + 4 < total
    });
    cluster.coordinator.process.kill_hard();
    let snapshots = std::fs::read_dir(cluster.state())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("snapshot-")
        })
        .count();
    assert!(snapshots >= 1, "the journal was never compacted");
    // Same address, same state: the workers reconnect and register again.
    let listen = url.trim_start_matches("http://").to_string();
    cluster.coordinator = start_coordinator(&cluster.state(), &listen, &compact);
    wait_succeeded(&url, &job);
    cluster.assert_like_the_reference(&job);
    assert!(
        cluster.journal().contains(r#""incarnation":2"#),
        "the restart did not resume the journal"
    );
}

#[test]
fn a_journal_that_cannot_grow_stops_the_coordinator_and_a_restart_finishes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("runs");
    let spec = write_spec(dir.path(), &storage);
    let state = dir.path().join("state");
    // The journal reaches 128 KiB a few dozen Shapley commits in (each holds the sums).
    let mut limited = start_coordinator_with_file_limit(&state, "127.0.0.1:0", 128);
    let url = limited.url.clone();
    let _workers: Vec<Process> = (0..2)
        .map(|k| start_worker(&url, &format!("w{k}")))
        .collect();
    let job = submit(&url, &spec);
    // Fail-stop: the coordinator ends by itself, saying why and what to do.
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = limited.process.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the coordinator kept running with a journal it cannot write"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!exit.success(), "{exit}");
    let stderr = std::fs::read_to_string(state.with_extension("stderr")).unwrap();
    assert!(
        stderr.contains("the journal could not be written")
            && stderr.contains("resumes from the journal"),
        "{stderr}"
    );
    assert!(
        !storage.join(&job).join("results/phi.csv").exists(),
        "the job finished before the journal filled: raise the test's work or lower the limit"
    );
    // Space freed: the same state and address, and the job completes as if undisturbed.
    let listen = url.trim_start_matches("http://").to_string();
    let _coordinator = start_coordinator(&state, &listen, &[]);
    wait_succeeded(&url, &job);
    let (phi, rows) = outcome(&storage, &job);
    let (reference_phi, reference_rows) = reference();
    assert_eq!(
        &rows, reference_rows,
        "region rows differ from the reference"
    );
    assert!(phi == *reference_phi, "Φ differs from the undisturbed run");
}

#[test]
fn a_worker_told_to_stop_finishes_its_task_and_leaves() {
    let mut cluster = Cluster::start(2, &[]);
    let job = cluster.submit();
    let url = cluster.url().to_string();
    wait_until(&url, &job, "extraction under way", |t| {
        let (done, total, running) = stage(t, "extract");
        running >= 2 && done + 2 < total
    });
    let leaving = &mut cluster.workers[0];
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
    let text = wait_succeeded(&url, &job);
    assert!(
        text.contains("1 live worker(s)"),
        "the drained worker should have left:\n{text}"
    );
    cluster.assert_like_the_reference(&job);
}

#[test]
fn a_job_without_workers_fails_after_the_grace_period() {
    let cluster = Cluster::start(0, &["--worker-grace-seconds", "1"]);
    let job = cluster.submit();
    let text = wait_failed(cluster.url(), &job);
    assert!(text.contains("no worker was seen for 1 s"), "{text}");
}

/// A spec over the world with `[evaluate]` and `[ablate]` (small: a handful of images
/// and one fraction each), its results under `storage`.
fn assessed_spec(dir: &Path, storage: &Path) -> PathBuf {
    let world = world();
    let spec = world.spec(
        "assessed",
        5,
        storage,
        &format!(
            r#"[extract]
method = "gradient_x_activation"
background_ratio = 0.25
images_per_task = 24

[shapley]
permutations = 16
permutations_per_task = 8

{}"#,
            world.assessments()
        ),
    );
    let path = dir.join("assessed.toml");
    std::fs::write(&path, spec).expect("writing the spec");
    path
}

/// The files evaluate and ablate commit, and Φ, by their path under `results/`.
fn assessed_results(job_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let results = job_dir.join("results");
    let mut files = vec![
        "phi.csv".to_string(),
        "wsol.json".into(),
        "ablation.json".into(),
    ];
    let mut heatmaps: Vec<String> = std::fs::read_dir(results.join("heatmaps"))
        .expect("results/heatmaps")
        .map(|e| format!("heatmaps/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    heatmaps.sort();
    assert!(!heatmaps.is_empty(), "the evaluate stage drew heatmaps");
    files.extend(heatmaps);
    files
        .into_iter()
        .map(|name| {
            let bytes =
                std::fs::read(results.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, bytes)
        })
        .collect()
}

#[test]
fn evaluate_and_ablate_are_leased_stages_and_match_hint_run_byte_for_byte() {
    // `hint run` (one embedded worker) and a real coordinator with two hint-worker
    // processes run the same spec; the stages' files must be the same bytes.
    let embedded = tempfile::tempdir().expect("tempdir");
    let spec = assessed_spec(embedded.path(), &embedded.path().join("runs"));
    let out = succeeded(
        &hint_command()
            .env("OMP_NUM_THREADS", "1")
            .args(["run", spec.to_str().unwrap(), "--workers", "1"])
            .output()
            .unwrap(),
        "hint run with [evaluate] and [ablate]",
    );
    assert!(out.contains("localisation (WSOL"), "{out}");
    assert!(out.contains("ablation ("), "{out}");
    let reference = assessed_results(&embedded.path().join("runs/job-0001"));

    let cluster = Cluster::start(2, &[]);
    let spec = assessed_spec(cluster.dir.path(), &cluster.storage());
    let job = submit(cluster.url(), &spec);
    let text = wait_succeeded(cluster.url(), &job);
    for name in ["evaluate", "ablate"] {
        assert_eq!(stage(&text, name).0, 1, "{name} done:\n{text}");
    }
    let job_dir = cluster.storage().join(&job);
    let results = assessed_results(&job_dir);
    let names = |r: &[(String, Vec<u8>)]| r.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&results), names(&reference));
    for ((name, bytes), (_, expected)) in results.iter().zip(&reference) {
        assert!(
            bytes == expected,
            "{name} differs between hint run and the cluster"
        );
    }
    // The second report has both sections; nothing is left under attempts/.
    let report = std::fs::read_to_string(job_dir.join("results/report.html")).unwrap();
    assert!(report.contains("<h2>Localisation (WSOL)</h2>\n<p class=\"note\">Weakly"));
    assert!(report.contains("<h2>Causal ablation</h2>\n<p class=\"note\">Each concept"));
    assert!(!job_dir.join("attempts").exists());
    // job.json carries the object lift the evaluate stage measured (the world has masks).
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job_dir.join("results/job.json")).unwrap())
            .unwrap();
    let lift = &summary["region_lift"];
    assert!(lift["lift"].as_f64().is_some_and(|l| l > 0.0), "{summary}");
    assert!(lift["images"].as_u64().is_some_and(|n| n > 0), "{summary}");
    let journal = cluster.journal();
    for task in ["evaluate-00000", "ablate-00000"] {
        let commits = journal
            .lines()
            .filter(|l| l.contains("\"committed\"") && l.contains(task))
            .count();
        assert_eq!(commits, 1, "{task} committed once");
    }
}

#[test]
fn bad_input_is_quarantined_at_once_and_named() {
    let cluster = Cluster::start(0, &[]);
    // The job's own copy of the weights, removed after the spec was accepted: every extract
    // task then fails with bad input, which is never retried.
    let weights = cluster.dir.path().join("weights.safetensors");
    std::fs::copy(&world().weights, &weights).unwrap();
    let text = std::fs::read_to_string(&cluster.spec).unwrap().replace(
        &world().weights.display().to_string(),
        &weights.display().to_string(),
    );
    std::fs::write(&cluster.spec, text).unwrap();
    let job = cluster.submit();
    std::fs::remove_file(&weights).unwrap();
    let _worker = start_worker(cluster.url(), "only");
    let text = wait_failed(cluster.url(), &job);
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
    let cluster = Cluster::start(1, &[]);
    let url = cluster.url();
    let job = cluster.submit();
    wait_until(url, &job, "extraction under way", |t| {
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
    let storage = cluster.storage();
    let committed =
        |job: &str| std::fs::read_dir(storage.join(job).join("regions")).map_or(0, |d| d.count());
    let before = committed(&job);
    // The worker is told to drop the task, stays registered and runs the next job.
    let next = cluster.submit();
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

/// A job with three layers (`model.layers`) on a real coordinator and two worker processes,
/// the coordinator killed (-9) while the layers' jobs compute Φ and restarted on its
/// compacted journal: the job succeeds, every layer's Φ is byte for byte what `hint run`
/// writes for the same spec, and the job's depth view compares the three.
#[test]
fn a_job_with_layers_survives_a_coordinator_kill_and_matches_hint_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layers = ["features.1", "features.4", "features.7"];
    let spec = |storage: &Path| {
        world()
            .spec(
                "layers-test",
                7,
                storage,
                "[extract]\nmethod = \"gradient_x_activation\"\nbackground_ratio = 0.25\n\
                 images_per_task = 32\n\n[shapley]\npermutations = 48\n\
                 permutations_per_task = 8",
            )
            .replace(
                "layer = \"features.7\"",
                "layers = [\"features.1\", \"features.4\", \"features.7\"]",
            )
    };
    let reference = dir.path().join("reference.toml");
    std::fs::write(&reference, spec(&dir.path().join("reference"))).unwrap();
    succeeded(
        &hint(&["run", reference.to_str().unwrap(), "--workers", "1"]),
        "hint run",
    );

    let path = dir.path().join("job.toml");
    std::fs::write(&path, spec(&dir.path().join("runs"))).unwrap();
    let compact = ["--snapshot-bytes", "4096"];
    let state = dir.path().join("state");
    let mut coordinator = start_coordinator(&state, "127.0.0.1:0", &compact);
    let url = coordinator.url.clone();
    let _workers = [start_worker(&url, "w0"), start_worker(&url, "w1")];
    let job = submit(&url, &path);
    // The layers' jobs' Shapley tasks count in the job's status.
    wait_until(&url, &job, "the layers' Shapley stages under way", |t| {
        let (done, total, _) = stage(t, "shapley");
        done >= 1 && done + 8 < total
    });
    coordinator.process.kill_hard();
    let listen = url.trim_start_matches("http://").to_string();
    let _restarted = start_coordinator(&state, &listen, &compact);
    wait_succeeded(&url, &job);

    let job_dir = dir.path().join("runs").join(&job);
    for (k, layer) in layers.iter().enumerate() {
        let phi = std::fs::read(job_dir.join("layers").join(layer).join("results/phi.csv"))
            .expect("the layer's Φ");
        let alone = dir
            .path()
            .join("reference/job-0001/layers")
            .join(layer)
            .join("results/phi.csv");
        assert!(
            phi == std::fs::read(alone).unwrap(),
            "{layer}: Φ differs from hint run's"
        );
        // Each layer's job is a job of the coordinator's, listed by `hint status`.
        let child = format!("{job}.{}", k + 1);
        assert!(status(&url, &child).contains(": succeeded"), "{child}");
    }
    let depth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(job_dir.join("results/depth.json")).unwrap())
            .unwrap();
    assert_eq!(depth["layers"].as_array().unwrap().len(), 3);
}
