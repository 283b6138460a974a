//! Transport security and per-RPC access control.
//!
//! - TLS (rustls) on every server when `[server.tls]` names a certificate and key; with
//!   `client_ca_path`, clients may present certificates signed by that CA (mutual TLS), and with
//!   `require_client_cert` they must.
//! - Identity per call: a bearer token (`authorization: Bearer <token>`, tokens configured per
//!   principal, compared as SHA-256 digests in constant time) or the common name of a verified
//!   client certificate.
//! - Authorisation per RPC: `[server.auth.allow]` maps a method (`pkg.Service/Method`), a whole
//!   service (`pkg.Service/*`) or everything (`*`) to the principals allowed (`*` = any
//!   authenticated caller); the most specific rule wins; no rule = denied. Health checks are always
//!   open (probes); reflection follows the rules like any RPC.
//!
//! Tokens never appear in logs or errors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::config::{ConfigError, Secret};

/// `[server.tls]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of this server; empty: plaintext.
    pub cert_path: String,
    /// PEM private key of this server.
    pub key_path: String,
    /// PEM CA whose client certificates are accepted (mutual TLS).
    pub client_ca_path: String,
    /// Refuse connections without a client certificate.
    pub require_client_cert: bool,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_path.trim().is_empty()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled() && self.key_path.trim().is_empty() {
            return Err(ConfigError::invalid(
                "server.tls.key_path",
                "required with server.tls.cert_path",
            ));
        }
        if !self.enabled()
            && (!self.key_path.trim().is_empty() || !self.client_ca_path.trim().is_empty())
        {
            return Err(ConfigError::invalid(
                "server.tls.cert_path",
                "required with a key or client CA",
            ));
        }
        if self.require_client_cert && self.client_ca_path.trim().is_empty() {
            return Err(ConfigError::invalid(
                "server.tls.client_ca_path",
                "required with server.tls.require_client_cert",
            ));
        }
        Ok(())
    }

    /// The tonic server TLS configuration (files read now).
    pub fn server_config(&self) -> Result<Option<tonic::transport::ServerTlsConfig>, ConfigError> {
        if !self.enabled() {
            return Ok(None);
        }
        let read = |field: &str, p: &str| {
            std::fs::read(Path::new(p))
                .map_err(|e| ConfigError::invalid(field, format!("cannot read {p}: {e}")))
        };
        let cert = read("server.tls.cert_path", &self.cert_path)?;
        let key = read("server.tls.key_path", &self.key_path)?;
        let mut tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        if !self.client_ca_path.trim().is_empty() {
            let ca = read("server.tls.client_ca_path", &self.client_ca_path)?;
            tls = tls
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(!self.require_client_cert);
        }
        Ok(Some(tls))
    }
}

/// `[server.auth]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Check identities and the allow list on every RPC (except health).
    pub enabled: bool,
    /// Principal -> bearer token (from a Secret: env `AUGUR_SERVER__AUTH__TOKENS__<PRINCIPAL>`).
    pub tokens: BTreeMap<String, Secret>,
    /// Method pattern -> principals allowed.
    pub allow: BTreeMap<String, Vec<String>>,
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (principal, token) in &self.tokens {
            if token.expose().len() < 16 {
                return Err(ConfigError::invalid(
                    format!("server.auth.tokens.{principal}"),
                    "must be at least 16 characters",
                ));
            }
        }
        for pattern in self.allow.keys() {
            if !(pattern == "*" || pattern.contains('/')) {
                return Err(ConfigError::invalid(
                    format!("server.auth.allow.{pattern}"),
                    "expected \"*\", \"pkg.Service/*\" or \"pkg.Service/Method\"",
                ));
            }
        }
        if self.enabled && self.allow.is_empty() {
            return Err(ConfigError::invalid(
                "server.auth.allow",
                "empty: every call would be denied",
            ));
        }
        Ok(())
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub String);

/// The compiled access rules of one server.
#[derive(Debug)]
pub struct Authorizer {
    enabled: bool,
    tokens: Vec<(String, [u8; 32])>,
    allow: BTreeMap<String, Vec<String>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The common name of a DER certificate's subject.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

impl Authorizer {
    pub fn new(config: &AuthConfig) -> Self {
        Authorizer {
            enabled: config.enabled,
            tokens: config
                .tokens
                .iter()
                .map(|(p, t)| (p.clone(), digest(t.expose())))
                .collect(),
            allow: config.allow.clone(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The caller's identity: a valid bearer token, else a verified client certificate's CN.
    pub fn authenticate<B>(&self, req: &http::Request<B>) -> Result<Principal, Status> {
        if let Some(value) = req.headers().get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or_else(|| {
                    Status::unauthenticated("authorization: expected \"Bearer <token>\"")
                })?;
            let d = digest(token);
            // Compare with every configured token so the time does not depend on which matched.
            let mut found = None;
            for (p, t) in &self.tokens {
                if ct_eq(&d, t) {
                    found = Some(p.clone());
                }
            }
            return found
                .map(Principal)
                .ok_or_else(|| Status::unauthenticated("invalid bearer token"));
        }
        let certs = req
            .extensions()
            .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        if let Some(certs) = certs
            && let Some(cn) = certs.first().and_then(|c| common_name(c.as_ref()))
        {
            return Ok(Principal(cn));
        }
        Err(Status::unauthenticated(
            "no credentials: send \"authorization: Bearer <token>\" or a client certificate",
        ))
    }

    /// Whether `principal` may call `path` (`/pkg.Service/Method`).
    pub fn authorize(&self, principal: &Principal, path: &str) -> Result<(), Status> {
        let method = path.trim_start_matches('/');
        let service_wildcard = method.split_once('/').map(|(s, _)| format!("{s}/*"));
        let rule = self
            .allow
            .get(method)
            .or_else(|| service_wildcard.as_ref().and_then(|w| self.allow.get(w)))
            .or_else(|| self.allow.get("*"));
        match rule {
            Some(list) if list.iter().any(|p| p == "*" || *p == principal.0) => Ok(()),
            _ => Err(Status::permission_denied(format!(
                "{} may not call {method}",
                principal.0
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authz() -> Authorizer {
        let mut c = AuthConfig {
            enabled: true,
            ..Default::default()
        };
        c.tokens
            .insert("admin".into(), Secret::new("admin-token-0123456789"));
        c.tokens
            .insert("churn".into(), Secret::new("churn-token-0123456789"));
        c.allow.insert("*".into(), vec!["*".into()]);
        c.allow.insert(
            "augur.featurestore.v1.FeatureStore/DeleteCustomer".into(),
            vec!["admin".into()],
        );
        c.allow.insert(
            "augur.churn.v1.Churn/*".into(),
            vec!["admin".into(), "gateway".into()],
        );
        c.validate().unwrap();
        Authorizer::new(&c)
    }

    fn req(auth: Option<&str>) -> http::Request<()> {
        let mut r = http::Request::builder().uri("/x");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn tokens_identify_principals() {
        let a = authz();
        assert_eq!(
            a.authenticate(&req(Some("Bearer admin-token-0123456789")))
                .unwrap()
                .0,
            "admin"
        );
        let e = a
            .authenticate(&req(Some("Bearer nope-nope-nope-nope")))
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(
            !e.message().contains("nope"),
            "the token must not be echoed"
        );
        assert_eq!(
            a.authenticate(&req(Some("Basic x"))).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            a.authenticate(&req(None)).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let a = authz();
        let admin = Principal("admin".into());
        let churn = Principal("churn".into());
        let fs = "/augur.featurestore.v1.FeatureStore/";
        assert!(a.authorize(&admin, &format!("{fs}DeleteCustomer")).is_ok());
        assert_eq!(
            a.authorize(&churn, &format!("{fs}DeleteCustomer"))
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert!(
            a.authorize(&churn, &format!("{fs}GetOnlineFeatures"))
                .is_ok()
        );
        assert!(
            a.authorize(&churn, "/augur.churn.v1.Churn/PredictChurn")
                .is_err()
        );
        assert!(
            a.authorize(
                &Principal("gateway".into()),
                "/augur.churn.v1.Churn/PredictChurn"
            )
            .is_ok()
        );
    }

    #[test]
    fn config_is_checked() {
        let mut c = AuthConfig {
            enabled: true,
            ..Default::default()
        };
        assert!(c.validate().is_err(), "enabled without rules");
        c.allow.insert("Churn".into(), vec![]);
        assert!(c.validate().is_err(), "bad pattern");
        c.allow.clear();
        c.allow.insert("*".into(), vec!["*".into()]);
        c.tokens.insert("x".into(), Secret::new("short"));
        assert!(c.validate().is_err(), "short token");
        let t = TlsConfig {
            cert_path: "c.pem".into(),
            ..Default::default()
        };
        assert!(t.validate().is_err(), "cert without key");
        let t = TlsConfig {
            require_client_cert: true,
            ..Default::default()
        };
        assert!(t.validate().is_err());
    }
}
