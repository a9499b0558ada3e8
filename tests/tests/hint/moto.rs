//! A real S3 server for the tests: moto's (from the project's `.venv`), on a free loopback
//! port, spoken to over plain HTTP.
//!
//! [`Moto::start`] gives a server of one's own, stopped when the value is dropped; child
//! processes reach it through [`Moto::env`]. [`Moto::shared`] is one server for the whole
//! test binary whose `AWS_*` variables are also set in this process, for tests that call
//! `hint_common::storage` directly. Either way the server also exits when the test binary
//! does (it stops when its stdin closes), so a failed test never leaves one running.
//!
//! The inspection helpers ([`Moto::keys`], [`Moto::get`], [`Moto::etag`],
//! [`Moto::open_uploads`]) use their own small HTTP client, independent of the
//! `object_store` client under test. Moto checks that a request carries credentials, not
//! its signature, so they send a fixed `Authorization` header.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use crate::support::{hint_command, root};

/// Starts moto on a free port, prints the port, and exits when stdin reaches end of file.
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

/// A running moto S3 server.
pub struct Moto {
    port: u16,
    server: Child,
}

/// One HTTP response.
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Moto {
    /// Starts a server of its own; panics (saying to run the bootstrap) without moto.
    pub fn start() -> Moto {
        let venv = root().join(".venv");
        let moto_server = venv.join("bin/moto_server");
        assert!(
            moto_server.is_file(),
            "{} is missing: run scripts/bootstrap.sh (it installs moto, the S3 server these \
             tests talk to)",
            moto_server.display()
        );
        let mut server = Command::new(venv.join("bin/python"))
            .args(["-c", SERVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto");
        let mut line = String::new();
        BufReader::new(server.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("reading moto's port");
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto did not print its port: {line:?}"));
        let moto = Moto { port, server };
        // The port is printed once the socket listens; check it answers all the same.
        assert_eq!(moto.request("GET", "/", &[]).status, 200, "moto answers");
        moto
    }

    /// One server for the whole test binary, with `AWS_*` (see [`Moto::env`]) and
    /// `HINT_S3_PART_SIZE` = 5 MiB set in this process before any S3 client is built, so
    /// in-process writers upload in small parts.
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(|| {
            let moto = Moto::start();
            for (key, value) in moto.env() {
                std::env::set_var(key, value);
            }
            std::env::set_var("HINT_S3_PART_SIZE", (5 << 20).to_string());
            moto
        })
    }

    /// Runs `hint` with `args` against this server, downloads cached in `cache`.
    pub fn hint(&self, cache: &Path, args: &[&str]) -> Output {
        self.hint_with_env(cache, &[], args)
    }

    /// [`Moto::hint`] with more environment variables.
    pub fn hint_with_env(&self, cache: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
        hint_command()
            .args(args)
            .envs(self.env())
            .env("HINT_CACHE_DIR", cache)
            .envs(env.iter().copied())
            .output()
            .expect("starting hint")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The variables that point an S3 client (ours, boto3's) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Creates an empty bucket.
    pub fn create_bucket(&self, name: &str) {
        let response = self.request("PUT", &format!("/{name}"), &[]);
        assert_eq!(
            response.status,
            200,
            "creating bucket {name}: {}",
            response.text()
        );
    }

    /// Puts one object.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let response = self.request("PUT", &object_target(bucket, key), bytes);
        assert_eq!(
            response.status,
            200,
            "putting s3://{bucket}/{key}: {}",
            response.text()
        );
    }

    /// Puts every file below `local` at `<prefix>/<relative path>`.
    pub fn put_dir(&self, local: &Path, bucket: &str, prefix: &str) {
        for file in files_below(local) {
            let relative = file.strip_prefix(local).expect("below");
            let key = format!("{prefix}/{}", relative.to_str().expect("UTF-8 names"));
            self.put(bucket, &key, &std::fs::read(&file).expect("reading a file"));
        }
    }

    /// The object's content; `None` when there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let response = self.request("GET", &object_target(bucket, key), &[]);
        match response.status {
            200 => Some(response.body),
            404 => None,
            other => panic!("GET s3://{bucket}/{key}: {other} {}", response.text()),
        }
    }

    /// Downloads every object below `prefix` into `local/<relative key>`.
    pub fn get_dir(&self, bucket: &str, prefix: &str, local: &Path) {
        let prefix = prefix.trim_end_matches('/');
        for key in self.keys(bucket, prefix) {
            let relative = key[prefix.len()..].trim_start_matches('/');
            let path = local.join(relative);
            std::fs::create_dir_all(path.parent().expect("a parent")).unwrap();
            std::fs::write(&path, self.get(bucket, &key).expect("listed")).unwrap();
        }
    }

    /// The object's ETag without quotes (a multipart upload's ends in `-<parts>`); `None`
    /// when there is no object.
    pub fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        let response = self.request("HEAD", &object_target(bucket, key), &[]);
        match response.status {
            200 => Some(
                response
                    .header("etag")
                    .expect("an ETag header")
                    .trim_matches('"')
                    .to_string(),
            ),
            404 => None,
            other => panic!("HEAD s3://{bucket}/{key}: {other}"),
        }
    }

    /// Every key below `prefix` (all keys for ""), sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut target = format!("/{bucket}?list-type=2&prefix={}", encode(prefix, false));
            if let Some(token) = &token {
                target.push_str(&format!("&continuation-token={}", encode(token, false)));
            }
            let response = self.request("GET", &target, &[]);
            assert_eq!(
                response.status,
                200,
                "listing s3://{bucket}: {}",
                response.text()
            );
            let text = response.text();
            keys.extend(elements(&text, "Key"));
            token = elements(&text, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// The keys of the multipart uploads started in `bucket` and neither completed nor
    /// aborted, with the number of parts each has received.
    pub fn open_uploads(&self, bucket: &str) -> Vec<(String, usize)> {
        let response = self.request("GET", &format!("/{bucket}?uploads"), &[]);
        assert_eq!(response.status, 200, "{}", response.text());
        let text = response.text();
        let mut uploads = Vec::new();
        for upload in text.split("<Upload>").skip(1) {
            let key = elements(upload, "Key").remove(0);
            let id = elements(upload, "UploadId").remove(0);
            let parts = self.request(
                "GET",
                &format!(
                    "{}?uploadId={}",
                    object_target(bucket, &key),
                    encode(&id, false)
                ),
                &[],
            );
            assert_eq!(parts.status, 200, "{}", parts.text());
            uploads.push((key, parts.text().matches("<Part>").count()));
        }
        uploads
    }

    /// One HTTP/1.1 request to the server.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> Response {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connecting to moto");
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {AUTHORIZATION}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("sending to moto");
        stream.write_all(body).expect("sending to moto");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("reading moto's answer");
        parse_response(&raw)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size");
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("a hexadecimal chunk size");
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

/// `/bucket/key` with the key percent-encoded segment by segment.
fn object_target(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", encode(key, true))
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`).
fn encode(text: &str, keep_slash: bool) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The texts of every `<name>…</name>` element, XML entities decoded.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(text, _)| text))
        .map(|text| {
            text.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("reading a directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(files_below(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}
