//! The coordinator's gRPC port on a network: real `hint coordinator`, `hint-worker` and
//! client processes, real TLS with certificates made here (rcgen): a CA, a server
//! certificate for 127.0.0.1 / localhost, a client certificate from the CA and one from
//! another CA.
//!
//! - TLS + token: calls without the token or with a wrong one are refused (so is a worker),
//!   the right token works, `hint health` answers SERVING without a token;
//! - mutual TLS: a worker whose certificate another CA signed never registers (and says
//!   why), a client without a certificate is refused, a probe without one is answered, a
//!   worker with a good certificate registers and runs a tiny job to the end;
//! - a non-loopback `--listen` without authentication is refused, naming the flags;
//!   `--allow-insecure-remote`, TLS + token, or mutual TLS make it start;
//! - a request above `--max-request-bytes` is refused, saying so.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::support::{failed, hint_bin, hint_command, succeeded, TinyWorld};

/// A certificate and its key, as PEM files.
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

/// The test PKI, made once: `ca` signed `server` and `client`; `rogue_ca` signed `rogue`.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    rogue_ca: PathBuf,
    server: Pair,
    client: Pair,
    rogue: Pair,
}

fn certificate_authority(name: &str, path: &Path) -> Issuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-signing the CA");
    std::fs::write(path, cert.pem()).expect("writing the CA");
    Issuer::new(params, key)
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    purpose: ExtendedKeyUsagePurpose,
    dir: &Path,
) -> Pair {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![purpose];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("signing a leaf");
    let pair = Pair {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&pair.cert, cert.pem()).expect("writing a certificate");
    std::fs::write(&pair.key, key.serialize_pem()).expect("writing a key");
    pair
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ca = certificate_authority("hint test CA", &d.join("ca.pem"));
        let rogue_ca = certificate_authority("another CA", &d.join("rogue-ca.pem"));
        Pki {
            ca: d.join("ca.pem"),
            rogue_ca: d.join("rogue-ca.pem"),
            server: leaf(&ca, "coordinator", ExtendedKeyUsagePurpose::ServerAuth, d),
            client: leaf(&ca, "worker", ExtendedKeyUsagePurpose::ClientAuth, d),
            rogue: leaf(&rogue_ca, "rogue", ExtendedKeyUsagePurpose::ClientAuth, d),
            _dir: dir,
        }
    })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A child process killed when dropped (a failing test leaves nothing running).
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Drops what the tests' environment could add: each test says every setting it means.
fn clean(command: &mut Command) -> &mut Command {
    command
        .env_remove("HINT_TOKEN_FILE")
        .env_remove("HINT_COORDINATOR")
        .env_remove("HINT_LISTEN")
}

/// A running `hint coordinator` in its own directory.
struct Coordinator {
    _process: Process,
    /// `http://…` or `https://…`, from its address file.
    url: String,
    dir: PathBuf,
}

impl Coordinator {
    /// The port's address as `https://127.0.0.1:PORT` (it may listen on 0.0.0.0).
    fn loopback_url(&self) -> String {
        let port = self.url.rsplit(':').next().expect("a port");
        let scheme = self.url.split(':').next().expect("a scheme");
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// The value of `hint_live_workers` on the coordinator's metrics page.
    fn live_workers(&self) -> f64 {
        use std::io::{Read, Write};
        let address = std::fs::read_to_string(self.dir.join("http.address")).expect("http");
        let host = address.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(host).expect("connecting to /metrics");
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .lines()
            .find_map(|l| l.strip_prefix("hint_live_workers "))
            .unwrap_or_else(|| panic!("no hint_live_workers in:\n{response}"))
            .parse()
            .unwrap()
    }
}

/// Starts `hint coordinator --listen listen flags…` in a fresh directory under `parent`:
/// the coordinator once listening, or its stderr if it exits first.
fn start_coordinator(parent: &Path, listen: &str, flags: &[&str]) -> Result<Coordinator, String> {
    let dir = tempfile::Builder::new()
        .prefix("coordinator")
        .tempdir_in(parent)
        .expect("tempdir")
        .keep();
    let stderr = std::fs::File::create(dir.join("stderr")).expect("stderr file");
    let mut command = hint_command();
    clean(&mut command)
        .args(["coordinator", "--listen", listen, "--state"])
        .arg(dir.join("state"))
        .arg("--address-file")
        .arg(dir.join("address"))
        .args(["--http-listen", "127.0.0.1:0", "--http-address-file"])
        .arg(dir.join("http.address"))
        .args(flags)
        .env("HINT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut process = Process(command.spawn().expect("starting hint coordinator"));
    let start = Instant::now();
    loop {
        if let Ok(url) = std::fs::read_to_string(dir.join("address")) {
            return Ok(Coordinator {
                _process: process,
                url,
                dir,
            });
        }
        if process.0.try_wait().expect("polling").is_some() {
            return Err(std::fs::read_to_string(dir.join("stderr")).unwrap_or_default());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the coordinator neither listened nor exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `hint ARGS…` with a clean environment.
fn hint(args: &[&str]) -> Output {
    let mut command = hint_command();
    clean(&mut command)
        .args(args)
        .output()
        .expect("starting hint")
}

/// Starts `hint-worker` on `url` with `flags`, its stderr (warnings) in `stderr`.
fn start_worker(url: &str, name: &str, flags: &[&str], stderr: &Path) -> Process {
    let bin = hint_bin().with_file_name("hint-worker");
    assert!(
        bin.exists(),
        "{} is missing: `cargo build -p hint-worker`",
        bin.display()
    );
    let mut command = Command::new(bin);
    clean(&mut command)
        .args(["--coordinator", url, "--device", "cpu", "--name", name])
        .args(["--decode-threads", "1"])
        .args(flags)
        .env("OMP_WAIT_POLICY", "passive")
        .env("OMP_NUM_THREADS", "1")
        .env("HINT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"));
    Process(command.spawn().expect("starting hint-worker"))
}

/// Waits until `ready` holds, for at most `seconds`.
fn wait_for(seconds: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).expect("writing a test file");
    file
}

#[test]
fn tls_and_a_token_refuse_calls_without_the_right_token() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "correct-horse-battery\n");
    let wrong = write(dir.path(), "wrong", "correct-horse-battery-staple");
    let (cert, key, ca) = (path(&pki.server.cert), path(&pki.server.key), path(&pki.ca));
    let coordinator = start_coordinator(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--token-file",
            path(&token),
        ],
    )
    .expect("the coordinator starts");
    let url = coordinator.url.as_str();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let none = failed(
        &hint(&["status", "--coordinator", url, "--tls-ca", ca]),
        "a call without a token",
    );
    assert!(
        none.contains("refused")
            && none.contains("Unauthenticated")
            && none.contains("--token-file"),
        "{none}"
    );
    let bad = failed(
        &hint(&[
            "status",
            "--coordinator",
            url,
            "--tls-ca",
            ca,
            "--token-file",
            path(&wrong),
        ]),
        "a call with a wrong token",
    );
    assert!(
        bad.contains("Unauthenticated") && bad.contains("not this coordinator's"),
        "{bad}"
    );
    let good = succeeded(
        &hint(&[
            "status",
            "--coordinator",
            url,
            "--tls-ca",
            ca,
            "--token-file",
            path(&token),
        ]),
        "a call with the token",
    );
    assert!(good.contains("no jobs"), "{good}");
    // The token comes from HINT_TOKEN_FILE as well.
    let mut from_env = hint_command();
    let output = clean(&mut from_env)
        .args(["status", "--coordinator", url, "--tls-ca", ca])
        .env("HINT_TOKEN_FILE", &token)
        .output()
        .unwrap();
    succeeded(&output, "a call with HINT_TOKEN_FILE");

    // The coordinator's certificate is checked: another CA does not vouch for it, and
    // plaintext or an https URL without a CA is refused before any call.
    let rogue = failed(
        &hint(&[
            "status",
            "--coordinator",
            url,
            "--tls-ca",
            path(&pki.rogue_ca),
        ]),
        "trusting the wrong CA",
    );
    assert!(rogue.to_lowercase().contains("certificate"), "{rogue}");
    let no_ca = failed(
        &hint(&["status", "--coordinator", url]),
        "https without --tls-ca",
    );
    assert!(no_ca.contains("--tls-ca"), "{no_ca}");
    // --tls-domain names what the certificate must carry instead of the URL's host.
    let tls_as = |domain: &str| {
        let args = [
            "health",
            "--coordinator",
            url,
            "--tls-ca",
            ca,
            "--tls-domain",
            domain,
        ];
        hint(&args)
    };
    succeeded(&tls_as("localhost"), "--tls-domain localhost");
    let other = failed(
        &tls_as("coordinator.example"),
        "--tls-domain of another name",
    );
    assert!(other.to_lowercase().contains("certificate"), "{other}");

    // Probes carry no token; over TLS they still need the CA.
    let health = succeeded(
        &hint(&["health", "--coordinator", url, "--tls-ca", ca]),
        "hint health without a token",
    );
    assert_eq!(health.trim(), "SERVING");
    let plaintext = url.replace("https://", "http://");
    let output = hint(&[
        "health",
        "--coordinator",
        &plaintext,
        "--timeout-seconds",
        "3",
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a plaintext probe of a TLS port"
    );
    let reason = String::from_utf8_lossy(&output.stderr);
    assert_eq!(reason.trim().lines().count(), 1, "one line: {reason}");
    assert!(reason.contains("not healthy"), "{reason}");

    // A worker without the token is refused at registration and stops; with it, it registers.
    let refused_log = dir.path().join("refused-worker.log");
    let mut refused = start_worker(url, "no-token", &["--tls-ca", ca], &refused_log);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = refused.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker kept going"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(&refused_log).unwrap();
    assert!(
        log.contains("refused registration") && log.contains("--token-file"),
        "{log}"
    );
    let _worker = start_worker(
        url,
        "with-token",
        &["--tls-ca", ca, "--token-file", path(&token)],
        &dir.path().join("worker.log"),
    );
    wait_for(30, "the worker with the token to register", || {
        coordinator.live_workers() == 1.0
    });
}

/// A spec of a job that runs in seconds: a small world, a tiny CNN trained for 3 epochs.
fn tiny_job(dir: &Path) -> PathBuf {
    let spec = TinyWorld::make(dir, 3, 8, 3).spec(
        "security-test",
        7,
        &dir.join("runs"),
        r#"[extract]
method = "gradient_x_activation"
background_ratio = 0.25
images_per_task = 32

[shapley]
permutations = 8"#,
    );
    write(dir, "job.toml", &spec)
}

#[test]
fn mutual_tls_admits_only_workers_with_a_certificate_from_the_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let spec = tiny_job(dir.path());
    let ca = path(&pki.ca);
    let coordinator = start_coordinator(
        dir.path(),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            path(&pki.server.cert),
            "--tls-key",
            path(&pki.server.key),
            "--tls-client-ca",
            ca,
        ],
    )
    .expect("the coordinator starts");
    let url = coordinator.url.as_str();
    let client = [
        "--coordinator",
        url,
        "--tls-ca",
        ca,
        "--tls-cert",
        path(&pki.client.cert),
        "--tls-key",
        path(&pki.client.key),
    ];

    let rogue_log = dir.path().join("rogue-worker.log");
    let _rogue = start_worker(
        url,
        "rogue",
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            path(&pki.rogue.cert),
            "--tls-key",
            path(&pki.rogue.key),
        ],
        &rogue_log,
    );
    // A client without a certificate is turned away, but a probe needs none.
    let anonymous = failed(
        &hint(&["status", "--coordinator", url, "--tls-ca", ca]),
        "a call without a client certificate",
    );
    assert!(
        anonymous.contains("Unauthenticated") && anonymous.contains("client certificate"),
        "{anonymous}"
    );
    let health = succeeded(
        &hint(&["health", "--coordinator", url, "--tls-ca", ca]),
        "hint health without a client certificate",
    );
    assert_eq!(health.trim(), "SERVING");
    // The rogue worker retries and says why it cannot get in.
    wait_for(30, "the rogue worker's second warning", || {
        std::fs::read_to_string(&rogue_log)
            .unwrap_or_default()
            .matches("cannot reach the coordinator")
            .count()
            >= 2
    });
    // Under TLS 1.3 the server checks a client's certificate after the client already counts
    // the handshake as done: the refusal reaches the worker as a TLS alert ("UnknownCA") or,
    // depending on timing, as a connection closed under it. Either way it is a transport
    // failure, never an answer.
    let log = std::fs::read_to_string(&rogue_log).unwrap();
    let lower = log.to_lowercase();
    assert!(
        ["certificate", "tls", "alert", "transport error"]
            .iter()
            .any(|word| lower.contains(word)),
        "no transport error in the rogue worker's log:\n{log}"
    );
    assert!(
        !lower.contains("registered"),
        "the rogue worker says it registered:\n{log}"
    );
    assert_eq!(
        coordinator.live_workers(),
        0.0,
        "the rogue worker registered"
    );

    let _worker = start_worker(
        url,
        "trusted",
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            path(&pki.client.cert),
            "--tls-key",
            path(&pki.client.key),
        ],
        &dir.path().join("worker.log"),
    );
    let mut submit = vec!["submit", path(&spec), "--wait"];
    submit.extend_from_slice(&client);
    let out = succeeded(&hint(&submit), "hint submit --wait over mutual TLS");
    assert!(
        out.contains("succeeded") && out.contains("1 live worker(s)"),
        "{out}"
    );
    let job = out.lines().next().expect("the job id").trim();
    let mut results = vec!["results", job];
    results.extend_from_slice(&client);
    let files = succeeded(&hint(&results), "hint results over mutual TLS");
    assert!(files.contains("phi.parquet"), "{files}");
}

#[test]
fn a_non_loopback_address_needs_authentication_or_an_explicit_opt_out() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "t0ken");
    let (cert, key, ca) = (path(&pki.server.cert), path(&pki.server.key), path(&pki.ca));
    let tls = ["--tls-cert", cert, "--tls-key", key];

    let refusal = start_coordinator(dir.path(), "0.0.0.0:0", &[])
        .err()
        .expect("no authentication on 0.0.0.0 is refused");
    for needed in [
        "0.0.0.0",
        "--tls-cert",
        "--token-file",
        "--tls-client-ca",
        "--allow-insecure-remote",
    ] {
        assert!(
            refusal.contains(needed),
            "{needed} missing from:\n{refusal}"
        );
    }
    let clear = start_coordinator(dir.path(), "0.0.0.0:0", &["--token-file", path(&token)])
        .err()
        .expect("a token over plaintext on 0.0.0.0 is refused");
    assert!(clear.contains("in clear"), "{clear}");
    let tls_only = start_coordinator(dir.path(), "0.0.0.0:0", &tls)
        .err()
        .expect("TLS without a token on 0.0.0.0 is refused");
    assert!(tls_only.contains("lets anyone"), "{tls_only}");

    start_coordinator(dir.path(), "0.0.0.0:0", &["--allow-insecure-remote"])
        .expect("--allow-insecure-remote starts");
    let mut with_token = tls.to_vec();
    with_token.extend(["--token-file", path(&token)]);
    let coordinator =
        start_coordinator(dir.path(), "0.0.0.0:0", &with_token).expect("TLS + token starts");
    let health = succeeded(
        &hint(&[
            "health",
            "--coordinator",
            &coordinator.loopback_url(),
            "--tls-ca",
            ca,
        ]),
        "hint health on 0.0.0.0",
    );
    assert_eq!(health.trim(), "SERVING");
    let mut mutual = tls.to_vec();
    mutual.extend(["--tls-client-ca", ca]);
    start_coordinator(dir.path(), "0.0.0.0:0", &mutual).expect("mutual TLS starts");
}

#[test]
fn a_request_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coordinator =
        start_coordinator(dir.path(), "127.0.0.1:0", &["--max-request-bytes", "4096"])
            .expect("the coordinator starts");
    let url = coordinator.url.as_str();
    // A spec of 8 KiB (a long comment) is refused for its size…
    let big = write(
        dir.path(),
        "big.toml",
        &format!("# {}\n[job]\nname = \"big\"\n", "x".repeat(8192)),
    );
    let error = failed(
        &hint(&["submit", path(&big), "--coordinator", url]),
        "a submit above --max-request-bytes",
    );
    assert!(
        error.contains("too large") && error.contains("--max-request-bytes"),
        "{error}"
    );
    // …and a small one reaches the coordinator, which judges its content.
    let small = write(dir.path(), "small.toml", "[job]\nname = \"small\"\n");
    let error = failed(
        &hint(&["submit", path(&small), "--coordinator", url]),
        "a submit of an incomplete spec",
    );
    assert!(
        !error.contains("too large") && error.contains("model"),
        "{error}"
    );
}
