//! TLS, mutual TLS and per-RPC access control on a real server (the feature store), with
//! certificates generated in the test (rcgen): allowed, denied and unauthenticated calls.
//!
//! Rules used here (as an operator would write them):
//!   "*" = ["*"]                                       any authenticated caller
//!   FeatureStore/GetHistoricalFeatures = ["churn", "admin"]   model services train on history
//!   FeatureStore/DeleteCustomer = ["admin"]           only admin erases
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use augur_proto::featurestore as fs;
use augur_runtime::client::{ClientConfig, ServiceChannel};
use augur_runtime::config::Secret;
use fs::feature_store_client::FeatureStoreClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn new_ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = p.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(p, key),
    }
}

/// A leaf certificate (PEM cert, PEM key) with common name `cn`.
fn leaf(ca: &Ca, cn: &str, server: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

type Client = FeatureStoreClient<ServiceChannel>;

fn client(url: &str, config: &ClientConfig) -> Client {
    let channel = augur_runtime::client::service_channel(
        url,
        Duration::from_secs(5),
        &Default::default(),
        config,
    )
    .unwrap();
    FeatureStoreClient::new(channel)
}

async fn historical(c: &mut Client) -> Result<(), tonic::Status> {
    c.get_historical_features(fs::GetHistoricalFeaturesRequest {
        view: "customer".into(),
        rows: vec![fs::EntityAt {
            entity_id: "nobody".into(),
            as_of: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        }],
        features: vec![],
    })
    .await
    .map(|_| ())
}

async fn delete(c: &mut Client) -> Code {
    match c
        .delete_customer(fs::DeleteCustomerRequest {
            customer_id: "nobody".into(),
        })
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_identities_and_allow_lists() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = new_ca("augur test CA");
    let rogue = new_ca("rogue CA");
    let (srv_cert, srv_key) = leaf(&ca, "feature-store", true);
    let ca_path = write(d, "ca.pem", &ca.pem);

    let mut config = augur_feature_store::Config {
        data_dir: d.join("data"),
        ..Default::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.tls.cert_path = write(d, "server.pem", &srv_cert);
    config.server.tls.key_path = write(d, "server.key", &srv_key);
    config.server.tls.client_ca_path = ca_path.clone();
    config.server.auth.enabled = true;
    config
        .server
        .auth
        .tokens
        .insert("admin".into(), Secret::new("admin-token-5f2a9c1e7b"));
    config
        .server
        .auth
        .allow
        .insert("*".into(), vec!["*".into()]);
    config.server.auth.allow.insert(
        "augur.featurestore.v1.FeatureStore/GetHistoricalFeatures".into(),
        vec!["churn".into(), "admin".into()],
    );
    config.server.auth.allow.insert(
        "augur.featurestore.v1.FeatureStore/DeleteCustomer".into(),
        vec!["admin".into()],
    );
    let (server, _app) = augur_feature_store::build(&config).await.unwrap();
    let handle = server.spawn().await.unwrap();
    let url = format!("https://{}", handle.addr());

    let trust = |cert: Option<(String, String)>, token: &str| {
        let mut c = ClientConfig {
            ca_path: ca_path.clone(),
            domain_name: "localhost".into(),
            token: Secret::new(token),
            ..Default::default()
        };
        if let Some((cert, key)) = cert {
            let n = rand_name();
            c.cert_path = write(d, &format!("{n}.pem"), &cert);
            c.key_path = write(d, &format!("{n}.key"), &key);
        }
        c
    };

    // Plaintext is refused at the transport.
    let mut plain = client(
        &format!("http://{}", handle.addr()),
        &ClientConfig::default(),
    );
    let e = plain
        .list_feature_views(fs::ListFeatureViewsRequest::default())
        .await
        .unwrap_err();
    assert_transport_refused(&e);

    // TLS without credentials: UNAUTHENTICATED, but health stays open for probes.
    let anon = trust(None, "");
    let mut c = client(&url, &anon);
    let e = c
        .list_feature_views(fs::ListFeatureViewsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let channel = augur_runtime::client::service_channel(
        &url,
        Duration::from_secs(5),
        &Default::default(),
        &anon,
    )
    .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health is open");

    // mTLS as "churn": may read history and features, may not erase.
    let mut churn = client(&url, &trust(Some(leaf(&ca, "churn", false)), ""));
    churn
        .list_feature_views(fs::ListFeatureViewsRequest::default())
        .await
        .unwrap();
    historical(&mut churn).await.unwrap();
    assert_eq!(delete(&mut churn).await, Code::PermissionDenied);

    // mTLS as "risk": not on the history allow list.
    let mut risk = client(&url, &trust(Some(leaf(&ca, "risk", false)), ""));
    assert_eq!(
        historical(&mut risk).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // mTLS as "admin": may erase (the customer is unknown: NOT_FOUND, i.e. past the check).
    let mut admin = client(&url, &trust(Some(leaf(&ca, "admin", false)), ""));
    assert_eq!(delete(&mut admin).await, Code::NotFound);

    // Bearer token over TLS without a client certificate.
    let mut by_token = client(&url, &trust(None, "admin-token-5f2a9c1e7b"));
    assert_eq!(delete(&mut by_token).await, Code::NotFound);
    let mut bad_token = client(&url, &trust(None, "wrong-token-000000000"));
    let e = bad_token
        .list_feature_views(fs::ListFeatureViewsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(
        !e.message().contains("wrong-token"),
        "tokens are never echoed: {e}"
    );

    // A certificate from another CA fails the handshake.
    let mut rogue_client = client(&url, &trust(Some(leaf(&rogue, "admin", false)), ""));
    let e = rogue_client
        .list_feature_views(fs::ListFeatureViewsRequest::default())
        .await
        .unwrap_err();
    assert_transport_refused(&e);

    handle.shutdown().await.unwrap();
}

/// A connection the server refuses at the transport surfaces as one of these, depending on
/// where in the handshake or the HTTP/2 preface hyper notices; what must never happen is a
/// reply from the service (OK, or an application status).
fn assert_transport_refused(e: &tonic::Status) {
    assert!(
        matches!(
            e.code(),
            Code::Unavailable | Code::Cancelled | Code::Unknown | Code::Internal
        ),
        "expected a transport failure, got {e}"
    );
    assert!(
        std::error::Error::source(e).is_some() || e.code() == Code::Unavailable,
        "a transport failure carries its transport error: {e:?}"
    );
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("client-{}", N.fetch_add(1, Ordering::Relaxed))
}
