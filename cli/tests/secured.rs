//! The command line against a secured platform: a feature store and a recommendation service
//! with TLS and bearer-token auth (certificates generated here with rcgen, as in
//! services/feature-store/tests/security.rs), called through the library functions `augur`
//! uses and through the `augur` binary itself.
//!
//! Rules (as an operator would write them):
//!   feature store:  "*" = ["*"], FeatureStore/IngestStream = ["admin"]
//!   recommendation: "*" = ["*"], Recommendation/Train = ["admin"]
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use augur_cli::connect::{CallError, ConnectArgs, TOKEN_HINT, TokenSource};
use augur_cli::train::{Model, Service};
use augur_proto::featurestore as fs;
use augur_runtime::client::ClientConfig;
use augur_runtime::config::Secret;
use augur_runtime::security::AuthConfig;
use augur_runtime::{ServerConfig, ServerHandle};
use indicatif::ProgressBar;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::Code;

const ADMIN: &str = "admin-token-7c41e9a2d0";
const READER: &str = "reader-token-3b8f6a1c55";
const REC: &str = "rec-token-90d2e4f7a1b3";

/// A CA (ca.pem), a server certificate it signed for `localhost` (server.pem / server.key), a
/// client certificate with common name `admin` (admin.pem / admin.key), and an unrelated CA
/// (rogue-ca.pem); returns the two CA paths.
fn pki(dir: &Path) -> (PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "augur test CA");
    let ca_pem = p.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(p, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut s = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    s.distinguished_name.push(DnType::CommonName, "augur");
    s.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = s.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut c = CertificateParams::new(Vec::<String>::new()).unwrap();
    c.distinguished_name.push(DnType::CommonName, "admin");
    c.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = c.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("admin.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("admin.key"), key.serialize_pem()).unwrap();

    let rogue_key = KeyPair::generate().unwrap();
    let mut r = CertificateParams::new(Vec::<String>::new()).unwrap();
    r.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    r.distinguished_name.push(DnType::CommonName, "rogue CA");
    let rogue_pem = r.self_signed(&rogue_key).unwrap().pem();

    let ca = dir.join("ca.pem");
    let rogue = dir.join("rogue-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&rogue, rogue_pem).unwrap();
    (ca, rogue)
}

fn secured(dir: &Path, ca: &Path, tokens: &[(&str, &str)], allow: &[(&str, &str)]) -> ServerConfig {
    let mut c = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    c.tls.cert_path = dir.join("server.pem").display().to_string();
    c.tls.key_path = dir.join("server.key").display().to_string();
    c.tls.client_ca_path = ca.display().to_string();
    let mut auth = AuthConfig {
        enabled: true,
        ..Default::default()
    };
    for (p, t) in tokens {
        auth.tokens.insert(p.to_string(), Secret::new(*t));
    }
    auth.allow.insert("*".into(), vec!["*".into()]);
    for (method, who) in allow {
        auth.allow.insert(method.to_string(), vec![who.to_string()]);
    }
    c.auth = auth;
    c
}

fn ts(s: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: s,
        nanos: 0,
    })
}

const T0: i64 = 1_700_000_000;

/// Two tastes of ten products; customers walk their taste's products buying and viewing.
fn events() -> Vec<fs::Event> {
    let cats = ["Books", "Toys"];
    let mut ev = Vec::new();
    for cat in cats {
        for p in 0..10 {
            ev.push(fs::Event {
                payload: Some(fs::event::Payload::Product(fs::Product {
                    sku: format!("{cat}-{p}"),
                    title: format!("{cat} {p}"),
                    category_path: vec!["Shop".into(), cat.into()],
                    price: 10.0,
                    stock: 50,
                    active: Some(true),
                    ts: ts(T0),
                    ..Default::default()
                })),
            });
        }
    }
    for u in 0..30 {
        let cat = cats[u % 2];
        for step in 0..5 {
            ev.push(fs::Event {
                payload: Some(fs::event::Payload::Interaction(fs::Interaction {
                    event_id: format!("i-{u}-{step}"),
                    customer_id: format!("c{u}"),
                    sku: format!("{cat}-{}", (u / 2 + step) % 10),
                    kind: if step % 2 == 0 {
                        fs::InteractionKind::Purchase as i32
                    } else {
                        fs::InteractionKind::View as i32
                    },
                    ts: ts(T0 + 86_400 * (u as i64 % 5) + step as i64 * 3600),
                    ..Default::default()
                })),
            });
        }
    }
    ev
}

struct Platform {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ca: PathBuf,
    rogue: PathBuf,
    fs: ServerHandle,
    rec: ServerHandle,
}

impl Platform {
    async fn start() -> Platform {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (ca, rogue) = pki(&dir);
        let fs_config = augur_feature_store::Config {
            data_dir: dir.join("fs"),
            server: secured(
                &dir,
                &ca,
                &[
                    ("admin", ADMIN),
                    ("reader", READER),
                    ("recommendation", REC),
                ],
                &[("augur.featurestore.v1.FeatureStore/IngestStream", "admin")],
            ),
            ..Default::default()
        };
        let (server, _app) = augur_feature_store::build(&fs_config).await.unwrap();
        let fs = server.spawn().await.unwrap();

        let mut rec_config = augur_recommendation::default_config();
        rec_config.server = secured(
            &dir,
            &ca,
            &[("admin", ADMIN), ("reader", READER)],
            &[("augur.recommendation.v1.Recommendation/Train", "admin")],
        );
        rec_config.data_dir = dir.join("rec");
        rec_config.feature_store_url = format!("https://{}", fs.addr());
        rec_config.client = ClientConfig {
            ca_path: ca.display().to_string(),
            domain_name: "localhost".into(),
            token: Secret::new(REC),
            ..Default::default()
        };
        let rec = augur_recommendation::build(&rec_config)
            .spawn()
            .await
            .unwrap();
        Platform {
            _dir: tmp,
            dir,
            ca,
            rogue,
            fs,
            rec,
        }
    }

    fn flags(&self, ca: &Path) -> ConnectArgs {
        ConnectArgs {
            ca: Some(ca.to_path_buf()),
            tls_domain: Some("localhost".into()),
            ..Default::default()
        }
    }

    fn fs_remote(&self, ca: &Path, token: &str) -> augur_cli::connect::Remote {
        let source = if token.is_empty() {
            TokenSource::None
        } else {
            TokenSource::Env
        };
        self.flags(ca)
            .remote_with_token(&self.fs.addr().to_string(), Secret::new(token), source)
            .unwrap()
    }

    /// Runs the `augur` binary with `AUGUR_TOKEN` set to `token` (unset when empty).
    async fn augur(&self, args: Vec<String>, token: &str) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_augur"));
        cmd.args(args).env_remove("AUGUR_TOKEN");
        if !token.is_empty() {
            cmd.env("AUGUR_TOKEN", token);
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    fn tls_args(&self, addr: std::net::SocketAddr) -> Vec<String> {
        vec![
            "--addr".into(),
            format!("https://{addr}"),
            "--ca".into(),
            self.ca.display().to_string(),
            "--tls-domain".into(),
            "localhost".into(),
        ]
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn call_error(e: anyhow::Error) -> CallError {
    e.downcast::<CallError>()
        .unwrap_or_else(|e| panic!("expected a CallError, got {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_imports_and_trains_against_tls_and_token_auth() {
    let p = Platform::start().await;
    let bar = ProgressBar::hidden();
    let ev = events();
    let n = ev.len() as u64;

    // Library path of `augur import`: CA + admin token ingests.
    let resp = augur_cli::import::ingest_on(&p.fs_remote(&p.ca, ADMIN), ev.clone(), 50, &bar)
        .await
        .unwrap();
    assert_eq!(resp.accepted, n, "{resp:?}");
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);

    // No token: UNAUTHENTICATED with the hint.
    let e = call_error(
        augur_cli::import::ingest_on(&p.fs_remote(&p.ca, ""), ev.clone(), 50, &bar)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, Code::Unauthenticated, "{e}");
    let shown = e.to_string();
    assert!(shown.contains("UNAUTHENTICATED"), "{shown}");
    assert!(shown.contains(TOKEN_HINT), "{shown}");

    // A token whose principal may not ingest: PERMISSION_DENIED, the token never shown.
    let e = call_error(
        augur_cli::import::ingest_on(&p.fs_remote(&p.ca, READER), ev.clone(), 50, &bar)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, Code::PermissionDenied, "{e}");
    let shown = e.to_string();
    assert!(shown.contains("PERMISSION_DENIED"), "{shown}");
    assert!(shown.contains("reader may not call"), "{shown}");
    assert!(!shown.contains(READER), "{shown}");

    // The wrong CA: the handshake fails, and the message names the address and the CA file.
    let e = call_error(
        augur_cli::import::ingest_on(&p.fs_remote(&p.rogue, ADMIN), ev.clone(), 50, &bar)
            .await
            .unwrap_err(),
    );
    let shown = e.to_string();
    assert!(shown.contains("TLS handshake failed"), "{shown}");
    assert!(shown.contains(&p.fs.addr().to_string()), "{shown}");
    assert!(shown.contains(&p.rogue.display().to_string()), "{shown}");

    // Mutual TLS: the client certificate's common name (admin) is the principal; no token.
    let mtls = ConnectArgs {
        cert: Some(p.dir.join("admin.pem")),
        key: Some(p.dir.join("admin.key")),
        ..p.flags(&p.ca)
    }
    .remote_with_token(
        &p.fs.addr().to_string(),
        Secret::default(),
        TokenSource::None,
    )
    .unwrap();
    let resp = augur_cli::import::ingest_on(&mtls, ev.clone(), 50, &bar)
        .await
        .unwrap();
    assert_eq!(resp.duplicates, n, "the same events again: {resp:?}");

    // https:// without --ca: TLS against the public web PKI roots, which do not know the test
    // CA; the error says so.
    let public = ConnectArgs {
        tls_domain: Some("localhost".into()),
        ..Default::default()
    }
    .remote_with_token(
        &format!("https://{}", p.fs.addr()),
        Secret::new(ADMIN),
        TokenSource::Env,
    )
    .unwrap();
    let e = call_error(
        augur_cli::import::ingest_on(&public, ev.clone(), 50, &bar)
            .await
            .unwrap_err(),
    );
    let shown = e.to_string();
    assert!(shown.contains("TLS handshake failed"), "{shown}");
    assert!(shown.contains("public web PKI roots"), "{shown}");

    // Plaintext to a TLS server: a transport failure with the https hint.
    let plain = augur_cli::connect::Remote::plain(&format!("http://{}", p.fs.addr()));
    let e = call_error(
        augur_cli::import::ingest_on(&plain, ev.clone(), 50, &bar)
            .await
            .unwrap_err(),
    );
    let shown = e.to_string();
    assert!(shown.contains("https://"), "{shown}");

    // The binary: `augur import` of a JSON-lines file.
    let file = p.dir.join("interactions.jsonl");
    let mut lines = String::new();
    for u in 0..3 {
        let e = fs::Event {
            payload: Some(fs::event::Payload::Interaction(fs::Interaction {
                event_id: format!("cli-{u}"),
                customer_id: format!("c{u}"),
                sku: "Books-3".into(),
                kind: fs::InteractionKind::View as i32,
                ts: ts(T0 + 7 * 86_400),
                ..Default::default()
            })),
        };
        lines.push_str(&augur_cli::import::to_json(&e).unwrap().1);
        lines.push('\n');
    }
    std::fs::write(&file, lines).unwrap();
    let import = |extra: Vec<String>| {
        let mut a = vec![
            "import".to_string(),
            "--kind".into(),
            "interaction".into(),
            file.display().to_string(),
        ];
        a.extend(p.tls_args(p.fs.addr()));
        a.extend(extra);
        a
    };
    let out = p.augur(import(vec![]), "").await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: https://"), "{}", text(&out));
    assert!(!stderr.contains("backtrace"), "{}", text(&out));
    assert!(stderr.contains("UNAUTHENTICATED"), "{}", text(&out));
    assert!(stderr.contains(TOKEN_HINT), "{}", text(&out));

    let out = p.augur(import(vec![]), "wrong-token-000000000").await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("wrong-token"), "{}", text(&out));
    assert!(text(&out).contains("AUGUR_TOKEN"), "{}", text(&out));

    let token_file = p.dir.join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    let out = p
        .augur(
            import(vec![
                "--token-file".into(),
                token_file.display().to_string(),
            ]),
            "",
        )
        .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 accepted"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(ADMIN), "{}", text(&out));

    // `augur train` on the secured recommendation service (which reads the secured feature
    // store with its own token): a reader may not train, admin may.
    let train = {
        let mut a = vec!["train".to_string(), "recommendation".into()];
        a.extend(p.tls_args(p.rec.addr()));
        a
    };
    let out = p.augur(train.clone(), READER).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(READER), "{}", text(&out));

    let out = p.augur(train, ADMIN).await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("recommendation model") && stdout.contains("trained on"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(ADMIN), "{}", text(&out));

    // The library agrees: the service now has a model.
    let rec_remote = p
        .flags(&p.ca)
        .remote_with_token(
            &p.rec.addr().to_string(),
            Secret::new(READER),
            TokenSource::Env,
        )
        .unwrap();
    assert!(augur_cli::train::has_model_on(Model::of(Service::Recommendation), &rec_remote).await);

    p.rec.shutdown().await.unwrap();
    p.fs.shutdown().await.unwrap();
}
