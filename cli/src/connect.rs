//! How the command line reaches a service: the address, TLS trust and identity, and a bearer
//! token, turned into the runtime's [`ClientConfig`] and channel (the same TLS and token code the
//! services use between themselves), and failed calls explained for a person.
//!
//! The token comes from `--token-file` or the `AUGUR_TOKEN` environment variable, never from a
//! flag value: command lines end up in shell history and `ps`. It is held in the runtime's
//! [`Secret`] (redacted in `Debug`) and never printed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use augur_runtime::client::{ClientConfig, ClientInterceptor, ServiceChannel};
use augur_runtime::config::Secret;
use tonic::transport::{ClientTlsConfig, Identity};
use tonic::{Code, Status};

/// Environment variable holding the bearer token (`--token-file` takes precedence).
pub const TOKEN_ENV: &str = "AUGUR_TOKEN";

/// Hint printed when a server asks for credentials and none were given.
pub const TOKEN_HINT: &str = "the server requires a token: set AUGUR_TOKEN or --token-file";

/// Connection flags shared by every subcommand that calls a service.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct ConnectArgs {
    /// PEM CA certificate that signed the server's certificate; turns on TLS. Without it an
    /// https:// address is checked against the public web PKI roots.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --key); its common name is the principal.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Name on the server's certificate when it differs from the address's host (e.g.
    /// `--tls-domain localhost` for https://127.0.0.1:50051).
    #[arg(long, value_name = "NAME")]
    pub tls_domain: Option<String>,
    /// File whose first line is the bearer token sent as `authorization: Bearer <token>`.
    /// Otherwise the AUGUR_TOKEN environment variable is used; there is no --token flag.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// Where the token came from (said in messages instead of the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    None,
    File(PathBuf),
    Env,
    /// Set in a [`ClientConfig`] by the caller.
    Given,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::None => f.write_str("no token"),
            TokenSource::File(p) => write!(f, "the token in {}", p.display()),
            TokenSource::Env => write!(f, "the token in {TOKEN_ENV}"),
            TokenSource::Given => f.write_str("the configured token"),
        }
    }
}

/// Reads the token: the first line of `file` if given, else `env` (the value of
/// `AUGUR_TOKEN`). An unreadable or empty file is an error naming the file (never its content).
pub fn resolve_token(
    file: Option<&Path>,
    env: Option<String>,
) -> anyhow::Result<(Secret, TokenSource)> {
    if let Some(p) = file {
        let text = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("--token-file {}: cannot read it: {e}", p.display()))?;
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            anyhow::bail!(
                "--token-file {}: the file is empty (expected the token on its first line)",
                p.display()
            );
        }
        return Ok((Secret::new(token), TokenSource::File(p.to_path_buf())));
    }
    match env.as_deref().map(str::trim) {
        Some(t) if !t.is_empty() => Ok((Secret::new(t), TokenSource::Env)),
        _ => Ok((Secret::default(), TokenSource::None)),
    }
}

impl ConnectArgs {
    /// Whether any TLS flag is set.
    fn wants_tls(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.tls_domain.is_some()
    }

    /// The service at `addr` with these flags and the token from `--token-file` or
    /// `AUGUR_TOKEN`. `host:port` without a scheme gets `https://` when a TLS flag is set,
    /// else `http://`.
    pub fn remote(&self, addr: &str) -> anyhow::Result<Remote> {
        let (token, token_source) =
            resolve_token(self.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
        self.remote_with_token(addr, token, token_source)
    }

    /// As [`ConnectArgs::remote`] with the token given (tests, callers with their own source).
    pub fn remote_with_token(
        &self,
        addr: &str,
        token: Secret,
        token_source: TokenSource,
    ) -> anyhow::Result<Remote> {
        let addr = addr.trim();
        // With TLS, http:// becomes https:// (as the runtime's channel does), so messages show
        // what is dialled.
        let addr = if let Some(rest) = addr.strip_prefix("http://")
            && self.wants_tls()
        {
            format!("https://{rest}")
        } else if addr.contains("://") {
            addr.to_string()
        } else if self.wants_tls() {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        };
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let client = ClientConfig {
            ca_path: path(&self.ca),
            cert_path: path(&self.cert),
            key_path: path(&self.key),
            domain_name: self.tls_domain.clone().unwrap_or_default(),
            token,
        };
        let tls = self.wants_tls() || addr.starts_with("https://");
        Ok(Remote {
            addr,
            client,
            tls,
            token_source,
        })
    }
}

/// A service to call: its address and how to reach it.
#[derive(Debug, Clone)]
pub struct Remote {
    addr: String,
    client: ClientConfig,
    /// TLS on (a CA, a client certificate, a TLS domain, or an https:// address).
    tls: bool,
    token_source: TokenSource,
}

impl Remote {
    /// Plaintext, no token: the local platform of `augur up` and tests.
    pub fn plain(addr: &str) -> Self {
        Remote {
            addr: addr.to_string(),
            client: ClientConfig::default(),
            tls: addr.starts_with("https://"),
            token_source: TokenSource::None,
        }
    }

    /// An explicit client configuration (tests, callers with their own settings).
    pub fn new(addr: &str, client: ClientConfig) -> Self {
        let tls = !client.ca_path.trim().is_empty()
            || !client.cert_path.trim().is_empty()
            || addr.starts_with("https://");
        let token_source = if client.token.is_empty() {
            TokenSource::None
        } else {
            TokenSource::Given
        };
        Remote {
            addr: addr.to_string(),
            client,
            tls,
            token_source,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn has_token(&self) -> bool {
        !self.client.token.is_empty()
    }

    /// What the server certificate is checked against, for messages.
    fn trust(&self) -> String {
        if self.client.ca_path.trim().is_empty() {
            "the public web PKI roots (no --ca given)".into()
        } else {
            format!("CA file {}", self.client.ca_path)
        }
    }

    /// A lazily connecting channel that sends the token and trace context on every call.
    /// With a CA this is exactly the services' `client::service_channel`; TLS without a CA
    /// trusts the public web PKI roots (webpki-roots) through the same balancer and interceptor.
    pub fn channel(&self, request_timeout: Duration) -> anyhow::Result<ServiceChannel> {
        if self.has_token() && !self.tls {
            eprintln!(
                "warning: sending the bearer token to {} without TLS; use an https:// address",
                self.addr
            );
        }
        let interceptor = ClientInterceptor::new(&self.client)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.token_source))?;
        if !self.tls || !self.client.ca_path.trim().is_empty() {
            return augur_runtime::client::service_channel(
                &self.addr,
                request_timeout,
                &Default::default(),
                &self.client,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.addr));
        }
        let mut tls = ClientTlsConfig::new().trust_anchors(webpki_roots::TLS_SERVER_ROOTS.to_vec());
        let read = |flag: &str, p: &str| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("{flag} {p}: cannot read it: {e}"))
        };
        if !self.client.cert_path.trim().is_empty() {
            tls = tls.identity(Identity::from_pem(
                read("--cert", &self.client.cert_path)?,
                read("--key", &self.client.key_path)?,
            ));
        }
        if !self.client.domain_name.trim().is_empty() {
            tls = tls.domain_name(self.client.domain_name.trim());
        }
        let channel =
            augur_discovery::balanced_channel(&self.addr, None, request_timeout, Some(tls))
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.addr))?;
        Ok(tonic::service::interceptor::InterceptedService::new(
            channel,
            interceptor,
        ))
    }

    /// A failed call described for a person: the address, the gRPC code and message, the
    /// transport error behind it, and what to do.
    pub fn explain(&self, status: &Status) -> CallError {
        CallError::new(self, status)
    }
}

/// The canonical upper-case name of a gRPC code (`UNAUTHENTICATED`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The messages of an error and its sources, without repeats.
fn chain(status: &Status) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !status.message().is_empty() {
        parts.push(status.message().to_string());
    }
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// Words of rustls and hyper errors that mean the TLS handshake failed.
fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "handshake",
        "tls",
        "alert",
        "unknownissuer",
        "invalid peer",
        "not valid for name",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// A failed call, ready to print: `<addr>: <CODE>: <message>` and a hint.
#[derive(Debug, Clone)]
pub struct CallError {
    pub code: Code,
    pub text: String,
    pub hint: Option<String>,
}

impl CallError {
    fn new(remote: &Remote, status: &Status) -> Self {
        let code = status.code();
        let details = chain(status);
        let transport = std::error::Error::source(status).is_some();
        let (text, hint) = match code {
            Code::Unauthenticated => (
                format!("{}: {}: {}", remote.addr, code_name(code), details),
                Some(if remote.has_token() {
                    format!(
                        "the server did not accept {}: check AUGUR_TOKEN or --token-file",
                        remote.token_source
                    )
                } else {
                    TOKEN_HINT.to_string()
                }),
            ),
            Code::PermissionDenied => (
                format!("{}: {}: {}", remote.addr, code_name(code), details),
                Some(if remote.has_token() {
                    format!(
                        "{} names a principal the server's [server.auth.allow] rules do not allow \
                         here (Train and DeleteCustomer are for admin)",
                        remote.token_source
                    )
                } else {
                    format!(
                        "{TOKEN_HINT} (one for a principal allowed here: Train and \
                         DeleteCustomer are for admin)"
                    )
                }),
            ),
            _ if transport && remote.tls && looks_like_tls(&details) => (
                format!(
                    "{}: TLS handshake failed (server certificate checked against {}): {}",
                    remote.addr,
                    remote.trust(),
                    details
                ),
                Some(
                    "check that --ca is the CA that signed the server's certificate, and set \
                     --tls-domain to the name on it when the address is an IP"
                        .to_string(),
                ),
            ),
            _ if transport => (
                format!(
                    "{}: the connection failed ({}): {}",
                    remote.addr,
                    code_name(code),
                    details
                ),
                Some(if remote.tls {
                    "is the service running and listening with TLS at this address?".to_string()
                } else {
                    "is the service running? If it uses TLS, use an https:// address and --ca"
                        .to_string()
                }),
            ),
            _ => (
                format!("{}: {}: {}", remote.addr, code_name(code), details),
                None,
            ),
        };
        CallError { code, text, hint }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_wins_over_env_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "  file-token-0123456789 \nsecond line\n").unwrap();
        let (t, src) = resolve_token(Some(&p), Some("env-token".into())).unwrap();
        assert_eq!(t.expose(), "file-token-0123456789");
        assert_eq!(src, TokenSource::File(p.clone()));
        let (t, src) = resolve_token(None, Some(" env-token-0123456789\n".into())).unwrap();
        assert_eq!(t.expose(), "env-token-0123456789");
        assert_eq!(src, TokenSource::Env);
        let (t, src) = resolve_token(None, Some("   ".into())).unwrap();
        assert!(t.is_empty());
        assert_eq!(src, TokenSource::None);
    }

    #[test]
    fn bad_token_files_are_named_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = resolve_token(Some(&empty), None).unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("--token-file"), "{e}");
        let missing = dir.path().join("missing");
        let e = resolve_token(Some(&missing), Some("secret-env".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing") && !e.contains("secret-env"), "{e}");
    }

    #[test]
    fn addresses_get_a_scheme_and_tls_follows_the_flags() {
        let plain = ConnectArgs::default()
            .remote_with_token("127.0.0.1:1", Secret::default(), TokenSource::None)
            .unwrap();
        assert_eq!(plain.addr(), "http://127.0.0.1:1");
        assert!(!plain.tls);
        let secured = ConnectArgs {
            ca: Some("ca.pem".into()),
            tls_domain: Some("localhost".into()),
            ..Default::default()
        }
        .remote_with_token("127.0.0.1:1", Secret::new("t"), TokenSource::Env)
        .unwrap();
        assert_eq!(secured.addr(), "https://127.0.0.1:1");
        assert!(secured.tls);
        assert_eq!(secured.client.ca_path, "ca.pem");
        assert_eq!(secured.client.domain_name, "localhost");
        // The Debug form of the whole remote never shows the token.
        let debug = format!("{secured:?}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn denied_calls_get_the_code_and_a_hint() {
        let anon = Remote::plain("http://127.0.0.1:1");
        let e = anon.explain(&Status::unauthenticated("no credentials"));
        let text = e.to_string();
        assert!(text.contains("UNAUTHENTICATED: no credentials"), "{text}");
        assert!(text.contains(TOKEN_HINT), "{text}");
        let mut with_token = ConnectArgs::default()
            .remote_with_token(
                "http://127.0.0.1:1",
                Secret::new("tok-0123456789abcdef"),
                TokenSource::Env,
            )
            .unwrap();
        let e = with_token.explain(&Status::permission_denied("reader may not call X"));
        let text = e.to_string();
        assert!(
            text.contains("PERMISSION_DENIED: reader may not call X"),
            "{text}"
        );
        assert!(text.contains("AUGUR_TOKEN"), "{text}");
        assert!(!text.contains("tok-0123456789abcdef"), "{text}");
        with_token.client.token = Secret::default();
        let e = with_token.explain(&Status::invalid_argument("field x"));
        assert!(e.hint.is_none());
        assert_eq!(e.code, Code::InvalidArgument);
    }
}
