//! The unit tests' S3: one moto server (the project's `.venv`) per test binary, reached over
//! real HTTP. It is started once, before any S3 call, together with the `AWS_*` variables the
//! S3 clients read; it exits with the test binary (it stops when its stdin closes).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// Starts moto on a free port and prints the port; exits when stdin reaches end of file, so
/// the server never outlives the test process that started it.
const SERVER: &str = r#"
import os, sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
os._exit(0)
"#;

const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

pub(crate) struct TestS3 {
    pub port: u16,
    /// Held so its stdin stays open while the test binary runs.
    _server: Mutex<Child>,
}

fn venv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv")
}

/// The shared server; the first call starts it and points the S3 clients at it.
pub(crate) fn s3() -> &'static TestS3 {
    static S3: OnceLock<TestS3> = OnceLock::new();
    S3.get_or_init(|| {
        let venv = venv();
        assert!(
            venv.join("bin/moto_server").is_file(),
            "{} is missing: run scripts/bootstrap.sh (it installs moto, the S3 server these \
             tests talk to)",
            venv.join("bin/moto_server").display()
        );
        let mut child = Command::new(venv.join("bin/python"))
            .args(["-c", SERVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read moto's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto did not print its port: {line:?}"));
        // Set once, before any S3 client exists (clients read them when first built).
        for (key, value) in [
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ] {
            std::env::set_var(key, value);
        }
        TestS3 {
            port,
            _server: Mutex::new(child),
        }
    })
}

/// One HTTP/1.1 request to the server; returns the status, the headers (names lowercase) and
/// the body. Moto checks that a request is authenticated, not its signature, so a dummy
/// `Authorization` header is enough to create buckets and inspect uploads and objects.
pub(crate) fn http(method: &str, target: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let port = s3().port;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Authorization: {AUTHORIZATION}\r\nConnection: close\r\n\r\n"
    )
    .expect("send a request to moto");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read moto's answer");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, response[split + 4..].to_vec())
}

/// A new, empty bucket with a name unique to this test.
pub(crate) fn bucket(hint: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{hint}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (status, _, body) = http("PUT", &format!("/{name}"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    name
}

/// The ETag of `s3://bucket/key` as S3 reports it (multipart uploads end in `-<parts>`).
pub(crate) fn etag(bucket: &str, key: &str) -> String {
    let (status, headers, _) = http("HEAD", &format!("/{bucket}/{key}"));
    assert_eq!(status, 200, "HEAD s3://{bucket}/{key}");
    headers
        .into_iter()
        .find(|(k, _)| k == "etag")
        .map(|(_, v)| v.trim_matches('"').to_string())
        .expect("an ETag header")
}

/// Multipart uploads started in `bucket` and neither completed nor aborted.
pub(crate) fn open_uploads(bucket: &str) -> usize {
    let (status, _, body) = http("GET", &format!("/{bucket}?uploads"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    String::from_utf8_lossy(&body).matches("<Upload>").count()
}
