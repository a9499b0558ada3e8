//! gRPC transport security as the coordinator's clients see it (workers, `hint submit /
//! status / results / cancel / health`), and the bearer token both sides share.
//!
//! - [`ClientSettings`]: what the flags say (`--tls-ca`, `--tls-cert`/`--tls-key`,
//!   `--tls-domain`, `--token-file`); [`ClientTransport::load`] reads and checks the files
//!   once, so a typo fails at start, naming the file, not at the first call.
//! - [`ClientTransport::connect`] / [`ClientTransport::connect_lazy`]: a channel with TLS
//!   when the URL is `https://`, wrapped in [`BearerToken`], which adds
//!   `authorization: Bearer <token>` to every call ([`AuthorizedChannel`]).
//! - [`Token`]: the shared secret (a file's content, trimmed); the coordinator checks a
//!   call's header with [`Token::check`], in constant time.
//! - [`describe`]: a status with its causes on one line (a TLS failure hides in the causes).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// The header a token travels in.
pub const AUTHORIZATION: &str = "authorization";

/// Longest wait for a connection to the coordinator (TCP and the TLS handshake).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A channel to the coordinator whose calls carry the bearer token, if any.
pub type AuthorizedChannel = InterceptedService<Channel, BearerToken>;

/// Errors in the transport settings, each naming the file or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A file named by a flag could not be read.
    #[error("{flag} {}: {source}", path.display())]
    Read {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file is not what its flag needs (a PEM certificate, a PEM key, a token).
    #[error("{flag} {}: {problem}", path.display())]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The flags do not go together (TLS settings for a plaintext URL…).
    #[error("{0}")]
    Flags(String),
    /// The coordinator URL is malformed, or tonic refused the TLS settings.
    #[error("coordinator {url}: {}", chain(cause))]
    Endpoint {
        /// The URL.
        url: String,
        /// The cause, its own causes in the message (one line).
        cause: tonic::transport::Error,
    },
    /// The coordinator could not be reached (refused, timed out, TLS handshake failed).
    #[error("cannot reach the coordinator at {url}: {}", chain(cause))]
    Connect {
        /// The URL.
        url: String,
        /// The cause, its own causes in the message (one line).
        cause: tonic::transport::Error,
    },
}

/// The shared secret of a coordinator and its clients. Its `Debug` does not show it.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// The token in `path` (`--token-file`): the file's content without surrounding
    /// whitespace (a trailing newline from `echo` or a Kubernetes secret is not part of it).
    pub fn read(path: &Path) -> Result<Token, TransportError> {
        let flag = "--token-file";
        let text = std::fs::read_to_string(path).map_err(|source| TransportError::Read {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
        let token = text.trim();
        let problem = if token.is_empty() {
            Some("the file is empty")
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            Some("a token is printable ASCII without spaces (it travels in an HTTP header)")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(TransportError::Invalid {
                flag,
                path: path.to_path_buf(),
                problem: problem.to_string(),
            }),
            None => Ok(Token(token.to_string())),
        }
    }

    /// Whether a call's metadata carries `authorization: Bearer <this token>`; the status
    /// to answer with otherwise (`Unauthenticated`, saying what was wrong, never the token).
    /// The comparison takes the same time wherever the first difference is (only the
    /// length may show).
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(value) = metadata.get(AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "this coordinator requires a bearer token (`authorization: Bearer <token>`) \
                 and the call carried none: pass --token-file",
            ));
        };
        let presented = value.as_bytes().strip_prefix(b"Bearer ").ok_or_else(|| {
            Status::unauthenticated("the authorization header is not `Bearer <token>`")
        })?;
        if bool::from(presented.ct_eq(self.0.as_bytes())) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "the bearer token is not this coordinator's (check --token-file)",
            ))
        }
    }

    fn header(&self) -> MetadataValue<Ascii> {
        // `read` admits printable ASCII only, which is always a valid header value.
        format!("Bearer {}", self.0)
            .parse()
            .expect("a token of printable ASCII is a valid header value")
    }
}

/// Adds `authorization: Bearer <token>` to every call (nothing without a token).
#[derive(Clone, Debug, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// Calls carrying `token`.
    pub fn new(token: &Token) -> Self {
        BearerToken(Some(token.header()))
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}

/// How a client reaches the coordinator: the TLS and token flags of `hint-worker` and of
/// `hint submit/status/results/cancel/health`, one definition for all of them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientSettings {
    /// Trust this CA (PEM) for the coordinator's certificate; use with an https:// URL
    /// (no system roots are trusted).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a coordinator that requires one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the coordinator's certificate must carry, when not the URL's host.
    #[arg(long, value_name = "NAME")]
    pub tls_domain: Option<String>,
    /// Send `authorization: Bearer <token>`, the token being this file's content, trimmed.
    #[arg(long, value_name = "FILE", env = "HINT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// Loaded client settings: the TLS configuration and the token, files read and checked.
#[derive(Debug, Clone, Default)]
pub struct ClientTransport {
    tls: Option<ClientTlsConfig>,
    token: BearerToken,
}

impl ClientTransport {
    /// Plaintext, no token: a coordinator on loopback (`hint run`).
    pub fn plain() -> Self {
        ClientTransport::default()
    }

    /// Reads the files `settings` names.
    pub fn load(settings: &ClientSettings) -> Result<Self, TransportError> {
        let token = match &settings.token_file {
            Some(path) => BearerToken::new(&Token::read(path)?),
            None => BearerToken::default(),
        };
        let identity = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(read_identity(cert, "--tls-cert", key, "--tls-key")?),
            (None, None) => None,
            _ => {
                return Err(TransportError::Flags(
                    "--tls-cert and --tls-key go together (a client certificate and its key)"
                        .into(),
                ))
            }
        };
        let tls = match &settings.tls_ca {
            Some(ca) => {
                let mut tls = ClientTlsConfig::new()
                    .ca_certificate(read_certificate(ca, "--tls-ca")?)
                    .timeout(CONNECT_TIMEOUT);
                if let Some(identity) = identity {
                    tls = tls.identity(identity);
                }
                if let Some(domain) = &settings.tls_domain {
                    tls = tls.domain_name(domain.clone());
                }
                Some(tls)
            }
            None if identity.is_some() || settings.tls_domain.is_some() => {
                return Err(TransportError::Flags(
                    "--tls-cert/--tls-key and --tls-domain need --tls-ca (the CA that signed \
                     the coordinator's certificate) and an https:// coordinator URL"
                        .into(),
                ))
            }
            None => None,
        };
        Ok(ClientTransport { tls, token })
    }

    /// Whether calls carry a token.
    pub fn has_token(&self) -> bool {
        self.token.0.is_some()
    }

    /// The interceptor that adds the token.
    pub fn interceptor(&self) -> BearerToken {
        self.token.clone()
    }

    /// An endpoint for `url` with TLS when it is `https://`. TLS settings with an
    /// `http://` URL, or an `https://` URL without `--tls-ca`, are refused: either would
    /// quietly not do what was meant.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TransportError> {
        let endpoint_error = |cause| TransportError::Endpoint {
            url: url.to_string(),
            cause,
        };
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(endpoint_error)?
            .connect_timeout(CONNECT_TIMEOUT);
        let https = endpoint.uri().scheme_str() == Some("https");
        match (&self.tls, https) {
            (Some(tls), true) => endpoint.tls_config(tls.clone()).map_err(endpoint_error),
            (None, false) => Ok(endpoint),
            (Some(_), false) => Err(TransportError::Flags(format!(
                "--tls-ca is set but the coordinator URL {url} is plaintext: use https://"
            ))),
            (None, true) => Err(TransportError::Flags(format!(
                "the coordinator URL {url} is https://: pass --tls-ca with the CA that \
                 signed its certificate"
            ))),
        }
    }

    /// A channel that connects on first use and reconnects after failures (workers).
    pub fn connect_lazy(&self, url: &str) -> Result<AuthorizedChannel, TransportError> {
        let channel = self.endpoint(url)?.connect_lazy();
        Ok(InterceptedService::new(channel, self.interceptor()))
    }

    /// A connected channel (client commands: an unreachable coordinator is an error now).
    pub async fn connect(&self, url: &str) -> Result<AuthorizedChannel, TransportError> {
        let channel =
            self.endpoint(url)?
                .connect()
                .await
                .map_err(|cause| TransportError::Connect {
                    url: url.to_string(),
                    cause,
                })?;
        Ok(InterceptedService::new(channel, self.interceptor()))
    }
}

/// A status with its code and causes on one line: "Unavailable: error trying to connect:
/// invalid peer certificate: UnknownIssuer". The causes say why a TLS handshake failed;
/// tonic's own display leaves them out.
pub fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        append_causes(&mut text, source);
    }
    text
}

/// An error and its causes on one line, each cause once.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    if let Some(source) = error.source() {
        append_causes(&mut text, source);
    }
    text
}

fn append_causes(text: &mut String, first: &(dyn std::error::Error + 'static)) {
    let mut cause = Some(first);
    while let Some(error) = cause {
        let line = error.to_string();
        // Wrappers often repeat their cause's text; say each thing once.
        if !line.is_empty() && !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = error.source();
    }
}

/// A PEM certificate (or chain) from a file, checked to hold one.
pub fn read_certificate(path: &Path, flag: &'static str) -> Result<Certificate, TransportError> {
    Ok(Certificate::from_pem(read_pem(
        path,
        flag,
        "CERTIFICATE-----",
        "a PEM certificate",
    )?))
}

/// A certificate and its private key (PEM) from two files: a TLS identity.
pub fn read_identity(
    cert: &Path,
    cert_flag: &'static str,
    key: &Path,
    key_flag: &'static str,
) -> Result<Identity, TransportError> {
    let cert = read_pem(cert, cert_flag, "CERTIFICATE-----", "a PEM certificate")?;
    let key = read_pem(key, key_flag, "PRIVATE KEY-----", "a PEM private key")?;
    Ok(Identity::from_pem(cert, key))
}

/// A file's bytes, checked to hold a PEM block ending in `marker` — tonic's parsers skip
/// what they do not recognise, so a wrong file would otherwise surface as a handshake
/// failure far from its cause.
fn read_pem(
    path: &Path,
    flag: &'static str,
    marker: &str,
    what: &str,
) -> Result<Vec<u8>, TransportError> {
    let bytes = std::fs::read(path).map_err(|source| TransportError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })?;
    let holds = String::from_utf8_lossy(&bytes)
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.trim_end().ends_with(marker));
    if holds {
        Ok(bytes)
    } else {
        Err(TransportError::Invalid {
            flag,
            path: path.to_path_buf(),
            problem: format!("not {what}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("token");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn with_header(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(AUTHORIZATION, value.parse().unwrap());
        metadata
    }

    #[test]
    fn a_token_is_the_trimmed_file_and_must_be_sent_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let token = Token::read(&token_file(dir.path(), "  s3cret-token\n")).unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert!(token.check(&with_header("Bearer s3cret-token")).is_ok());
        for wrong in [
            "Bearer s3cret-tokem",
            "Bearer s3cret-token2",
            "Bearer s3cret",
            "bearer s3cret-token",
            "s3cret-token",
        ] {
            let status = token.check(&with_header(wrong)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong}");
            assert!(!status.message().contains("s3cret"), "{}", status.message());
        }
        let missing = token.check(&MetadataMap::new()).unwrap_err();
        assert!(missing.message().contains("--token-file"), "{missing:?}");
    }

    #[test]
    fn the_interceptor_sends_what_check_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let token = Token::read(&token_file(dir.path(), "abc.DEF_123")).unwrap();
        let request = BearerToken::new(&token).call(Request::new(())).unwrap();
        assert!(token.check(request.metadata()).is_ok());
        let bare = BearerToken::default().call(Request::new(())).unwrap();
        assert!(bare.metadata().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn bad_token_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["", " \n", "two words"] {
            let error = Token::read(&token_file(dir.path(), text)).unwrap_err();
            assert!(error.to_string().starts_with("--token-file "), "{error}");
        }
        let missing = Token::read(&dir.path().join("absent")).unwrap_err();
        assert!(missing.to_string().contains("absent"), "{missing}");
    }

    #[test]
    fn tls_settings_must_match_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let plain = ClientTransport::plain();
        assert!(plain.endpoint("http://127.0.0.1:1").is_ok());
        let error = plain.endpoint("https://127.0.0.1:1").unwrap_err();
        assert!(error.to_string().contains("--tls-ca"), "{error}");

        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let settings = ClientSettings {
            tls_ca: Some(not_pem),
            ..Default::default()
        };
        let error = ClientTransport::load(&settings).unwrap_err();
        assert!(
            error.to_string().contains("not a PEM certificate"),
            "{error}"
        );

        let half = ClientSettings {
            tls_cert: Some(dir.path().join("cert.pem")),
            ..Default::default()
        };
        let error = ClientTransport::load(&half).unwrap_err();
        assert!(error.to_string().contains("--tls-key"), "{error}");
    }
}
