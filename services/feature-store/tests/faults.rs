//! Fault tests of the feature store:
//!
//! - PostgreSQL unreachable and back: a TCP proxy between the feature store and PostgreSQL is
//!   cut (listener and every connection closed, so new connections are refused) and later
//!   restored on the same port. Ingest answers UNAVAILABLE within its deadline and acknowledges
//!   nothing it did not store; online reads keep answering from memory; after the restore the
//!   same process ingests again, and every acknowledged event is in the database and in the
//!   online state (which also equals a fresh rebuild from the log).
//! - SIGKILL mid-ingest: the real `feature-store` binary, on SQLite (and PostgreSQL when
//!   reachable), is killed while several clients ingest; after a restart on the same data every
//!   acknowledged event is there.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use augur_proto::featurestore as pb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------------------
// A cuttable TCP proxy.

/// Forwards `listen` to `upstream` until cut; `restore` listens on the same port again.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let mut p = Self {
            addr,
            upstream,
            acceptor: None,
            conns: Arc::default(),
        };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: TcpListener) {
        let (upstream, conns) = (self.upstream, self.conns.clone());
        self.acceptor = Some(tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns.lock().unwrap().push(h);
            }
        }));
    }

    /// Closes the listener (new connections are refused) and every open connection.
    async fn cut(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
            let _ = a.await;
        }
        let conns: Vec<_> = self.conns.lock().unwrap().drain(..).collect();
        for c in &conns {
            c.abort();
        }
        for c in conns {
            let _ = c.await;
        }
        assert!(
            TcpStream::connect(self.addr).await.is_err(),
            "cut proxy must refuse connections"
        );
    }

    /// Listens on the same port again.
    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("re-bind the proxy port");
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// `postgres://user@host:port/db` with host:port replaced.
fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (auth_host, path) = rest.split_once('/').expect("path");
    let user = auth_host.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    format!("{scheme}://{}{addr}/{path}", user.unwrap_or_default())
}

fn host_port(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("scheme").1;
    let host = rest.split('/').next().expect("host");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    };
    let host = host.replace("localhost", "127.0.0.1");
    host.parse().expect("host:port of the PostgreSQL URL")
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn orders(prefix: &str, n: usize) -> Vec<pb::Event> {
    (0..n)
        .map(|i| {
            order(
                &format!("{prefix}-{i}"),
                &format!("cust-{}", i % 4),
                T0 + i as i64 * 60,
                &[("A", 1, 2.0)],
            )
        })
        .collect()
}

fn order_id(e: &pb::Event) -> String {
    match &e.payload {
        Some(pb::event::Payload::Order(o)) => o.order_id.clone(),
        Some(pb::event::Payload::Customer(c)) => c.customer_id.clone(),
        other => panic!("unexpected event {other:?}"),
    }
}

/// One Ingest with a client deadline. Ok(ids) when acknowledged (all accepted or duplicates).
async fn ingest(
    c: &mut FeatureStoreClient<Channel>,
    events: Vec<pb::Event>,
    deadline: Duration,
) -> Result<Vec<String>, tonic::Status> {
    let ids: Vec<String> = events.iter().map(order_id).collect();
    let n = events.len() as u64;
    let mut req = tonic::Request::new(pb::IngestRequest { events });
    req.set_timeout(deadline);
    let r = c.ingest(req).await?.into_inner();
    assert!(r.rejected.is_empty(), "{r:?}");
    assert_eq!(r.accepted + r.duplicates, n, "{r:?}");
    Ok(ids)
}

/// Every stored event id of a kind, from the database (ScanEvents).
async fn stored_ids(
    c: &mut FeatureStoreClient<Channel>,
    kind: pb::EventKind,
) -> Result<Vec<(String, String)>, tonic::Status> {
    let mut s = c
        .scan_events(pb::ScanEventsRequest {
            kinds: vec![kind as i32],
            batch_size: 5_000,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(batch) = s.next().await {
        for e in batch?.events {
            match e.event.and_then(|e| e.payload) {
                Some(pb::event::Payload::Order(o)) => out.push((o.order_id, o.customer_id)),
                Some(pb::event::Payload::Customer(c)) => {
                    out.push((c.customer_id.clone(), c.customer_id))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    Ok(out)
}

/// Online `frequency_lifetime` of these customers.
async fn online_orders(
    c: &mut FeatureStoreClient<Channel>,
    customers: &[String],
) -> BTreeMap<String, i64> {
    let r = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "customer".into(),
            entity_ids: customers.to_vec(),
            features: vec!["frequency_lifetime".into()],
        })
        .await
        .expect("online features answer from memory")
        .into_inner();
    r.rows
        .iter()
        .map(|row| {
            let n = if row.found {
                f64_of(&r.feature_names, row, "frequency_lifetime") as i64
            } else {
                0
            };
            (row.entity_id.clone(), n)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. PostgreSQL unreachable, then back.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_answers_unavailable_and_recovers_without_restart() {
    let Some(db) = augur_testkit::postgres::TestDb::create().await else {
        return;
    };
    let mut proxy = Proxy::start(host_port(&db.url)).await;
    let backend = Backend::Postgres {
        dir: tempfile::tempdir().expect("tempdir"),
        db,
    };
    let mut config = backend.config();
    let direct_url = config.database_url.expose().to_string();
    config.database_url = augur_runtime::Secret::new(via(&direct_url, proxy.addr));
    let fs = start(&config).await;
    let mut c = fs.client.clone();
    let deadline = Duration::from_secs(8);
    let mut acked: Vec<String> = Vec::new();

    // Before the outage.
    acked.extend(
        ingest(&mut c, orders("before", 40), deadline)
            .await
            .expect("ingest"),
    );

    // A writer that keeps ingesting through the outage and the restore.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let mut c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut errors) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match ingest(&mut c, orders(&format!("bg{n}"), 5), deadline).await {
                    Ok(ids) => ok.extend(ids),
                    Err(e) => errors.push((e.code(), e.message().to_string())),
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, errors)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // --- The outage.
    proxy.cut().await;
    let mut outage_codes = Vec::new();
    for round in 0..3 {
        let t = Instant::now();
        let err = ingest(&mut c, orders(&format!("during{round}"), 10), deadline)
            .await
            .expect_err("nothing can be stored while the database is unreachable");
        let took = t.elapsed();
        eprintln!(
            "outage ingest {round}: {:?} after {took:?}: {}",
            err.code(),
            err.message()
        );
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert!(took < deadline, "answered after {took:?}");
        outage_codes.push(err.code());
    }
    // Reads served from memory keep working.
    let online_during = online_orders(&mut c, &["cust-0".into()]).await;
    assert!(online_during["cust-0"] >= 10, "{online_during:?}");
    // Reads that need the database say UNAVAILABLE.
    let scan = stored_ids(&mut c, pb::EventKind::Order).await;
    let err = scan.expect_err("scan needs the database");
    assert_eq!(err.code(), Code::Unavailable, "{err}");

    // --- Back, on the same port, same process.
    proxy.restore().await;
    let back = Instant::now();
    let mut recovered = None;
    for attempt in 0..60 {
        match ingest(&mut c, orders("after0", 10), deadline).await {
            Ok(ids) => {
                acked.extend(ids);
                recovered = Some(back.elapsed());
                eprintln!(
                    "ingest recovered after {:?} ({attempt} retries)",
                    back.elapsed()
                );
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let recovered = recovered.expect("ingest works again after the database is back");
    assert!(recovered < Duration::from_secs(15), "{recovered:?}");
    acked.extend(
        ingest(&mut c, orders("after1", 40), deadline)
            .await
            .expect("ingest"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    let (bg_ok, bg_errors) = writer.await.expect("writer");
    eprintln!(
        "background writer: {} events acknowledged, {} calls refused: {:?}",
        bg_ok.len(),
        bg_errors.len(),
        bg_errors.iter().map(|(c, _)| *c).collect::<Vec<_>>()
    );
    for (code, msg) in &bg_errors {
        // A call in flight when the connection dies may also answer UNAVAILABLE; never INTERNAL.
        assert_eq!(*code, Code::Unavailable, "{msg}");
    }
    assert!(!bg_errors.is_empty(), "the writer saw the outage");
    acked.extend(bg_ok);

    // --- Every acknowledged event is stored; online state equals the database.
    let stored = stored_ids(&mut c, pb::EventKind::Order)
        .await
        .expect("scan");
    let stored_set: HashSet<&str> = stored.iter().map(|(o, _)| o.as_str()).collect();
    for id in &acked {
        assert!(stored_set.contains(id.as_str()), "acknowledged {id} lost");
    }
    for (id, _) in &stored {
        assert!(!id.starts_with("during"), "{id} was refused yet stored");
    }
    let customers: Vec<String> = (0..4).map(|i| format!("cust-{i}")).collect();
    let mut per_customer: BTreeMap<String, i64> = BTreeMap::new();
    for (_, cust) in &stored {
        *per_customer.entry(cust.clone()).or_default() += 1;
    }
    let online = online_orders(&mut c, &customers).await;
    assert_eq!(
        online, per_customer,
        "online state diverged from the database"
    );
    eprintln!(
        "{} acknowledged, {} stored ({} stored but unacknowledged)",
        acked.len(),
        stored.len(),
        stored.len() - acked.iter().collect::<HashSet<_>>().len()
    );

    // A fresh rebuild from the log (new process view, direct connection) agrees.
    drop(c);
    let Running { handle, client } = fs;
    drop(client);
    handle.shutdown().await.expect("shutdown");
    let mut direct = config.clone();
    direct.database_url = augur_runtime::Secret::new(direct_url);
    let mut fs2 = start(&direct).await;
    assert_eq!(
        online_orders(&mut fs2.client, &customers).await,
        per_customer
    );
    drop(fs2.client);
    fs2.handle.shutdown().await.expect("shutdown");
    drop(proxy);
    backend.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL mid-ingest.

/// The `feature-store` binary as a child process; killed on drop.
struct FsProcess {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for FsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn spawn_binary(
    dir: &std::path::Path,
    database_url: Option<&str>,
    sqlite_synchronous: &str,
    run: u32,
) -> FsProcess {
    let port = free_port();
    let log = dir.join(format!("feature-store-{run}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_feature-store"));
    for (k, _) in std::env::vars() {
        if k.starts_with("AUGUR_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AUGUR_DATA_DIR", dir.join("data"))
        .env("AUGUR_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("AUGUR_HASH_KEY", "test-hash-key-0123456789")
        .env("AUGUR_FOLLOW_INTERVAL_MS", "0")
        .env("AUGUR_SQLITE_SYNCHRONOUS", sqlite_synchronous)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    if let Some(u) = database_url {
        cmd.env("AUGUR_DATABASE_URL", u);
    }
    let mut child = FsProcess {
        child: cmd.spawn().expect("spawn feature-store"),
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let t = Instant::now();
    loop {
        if let Some(status) = child.child.try_wait().expect("wait") {
            panic!(
                "feature-store exited with {status}: {}",
                std::fs::read_to_string(&child.log).unwrap_or_default()
            );
        }
        if let Ok(mut c) = FeatureStoreClient::connect(child.url.clone()).await
            && c.list_feature_views(pb::ListFeatureViewsRequest::default())
                .await
                .is_ok()
        {
            return child;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "feature-store did not start: {}",
            std::fs::read_to_string(&child.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn kill_mid_ingest(database_url: Option<&str>, sqlite_synchronous: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fs = spawn_binary(dir.path(), database_url, sqlite_synchronous, 1).await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    // Three unary writers and one streaming writer (a stream is acknowledged at its end).
    for w in 0..4 {
        let url = fs.url.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut c = FeatureStoreClient::connect(url).await.expect("connect");
            let mut last_err = None;
            for n in 0.. {
                let batch = |m: usize| -> Vec<pb::Event> {
                    (0..50)
                        .map(|i| customer(&format!("w{w}-{n}-{m}-{i}"), "DE", T0))
                        .collect()
                };
                let res = if w < 3 {
                    let events = batch(0);
                    let ids: Vec<String> = events.iter().map(order_id).collect();
                    let mut req = tonic::Request::new(pb::IngestRequest { events });
                    req.set_timeout(Duration::from_secs(10));
                    c.ingest(req).await.map(|r| (ids, r.into_inner()))
                } else {
                    let msgs: Vec<pb::IngestRequest> = (0..3)
                        .map(|m| pb::IngestRequest { events: batch(m) })
                        .collect();
                    let ids: Vec<String> = msgs
                        .iter()
                        .flat_map(|m| m.events.iter().map(order_id))
                        .collect();
                    c.ingest_stream(tokio_stream::iter(msgs))
                        .await
                        .map(|r| (ids, r.into_inner()))
                };
                match res {
                    Ok((ids, r)) => {
                        assert!(r.rejected.is_empty(), "{r:?}");
                        assert_eq!(r.accepted + r.duplicates, ids.len() as u64);
                        acked.lock().unwrap().extend(ids);
                    }
                    Err(e) => {
                        last_err = Some(e);
                        break;
                    }
                }
            }
            last_err
        }));
    }
    // Kill once a good number of batches is acknowledged, while writes are in flight.
    let t = Instant::now();
    while acked.lock().unwrap().len() < 20_000 && t.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fs.child.kill().expect("SIGKILL");
    let status = fs.child.wait().expect("wait");
    let killed_after = t.elapsed();
    for w in writers {
        let err = w
            .await
            .expect("writer")
            .expect("every writer sees the kill");
        assert!(
            matches!(
                err.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
            ),
            "client-side transport error expected, got {err}"
        );
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(!acked.is_empty());
    eprintln!(
        "killed ({status}) after {killed_after:?} with {} events acknowledged",
        acked.len()
    );

    let t = Instant::now();
    let fs2 = spawn_binary(dir.path(), database_url, sqlite_synchronous, 2).await;
    let restart = t.elapsed();
    let mut c = FeatureStoreClient::connect(fs2.url.clone())
        .await
        .expect("connect");
    let mut missing = Vec::new();
    for chunk in acked.chunks(5_000) {
        let r = c
            .get_online_features(pb::GetOnlineFeaturesRequest {
                view: "customer".into(),
                entity_ids: chunk.to_vec(),
                features: vec![],
            })
            .await
            .expect("online")
            .into_inner();
        missing.extend(r.rows.into_iter().filter(|r| !r.found).map(|r| r.entity_id));
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let stored = stored_ids(&mut c, pb::EventKind::Customer)
        .await
        .expect("scan");
    let stored: HashSet<String> = stored.into_iter().map(|(id, _)| id).collect();
    assert!(acked.iter().all(|id| stored.contains(id)));
    eprintln!(
        "restart took {restart:?}; {} stored, {} acknowledged, {} stored but unacknowledged",
        stored.len(),
        acked.len(),
        stored.len() - acked.len()
    );
    // And it takes writes again.
    ingest(
        &mut c,
        vec![customer("after-restart", "DE", T0)],
        Duration::from_secs(10),
    )
    .await
    .expect("ingest after restart");
    drop(fs2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_ingest_loses_no_acknowledged_event_sqlite() {
    kill_mid_ingest(None, "full").await;
}

/// `synchronous = normal` trades power-loss durability, not process-crash durability.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_ingest_loses_no_acknowledged_event_sqlite_synchronous_normal() {
    kill_mid_ingest(None, "normal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_ingest_loses_no_acknowledged_event_postgres() {
    let Some(db) = augur_testkit::postgres::TestDb::create().await else {
        return;
    };
    kill_mid_ingest(Some(&db.url), "full").await;
    db.drop_db().await;
}
