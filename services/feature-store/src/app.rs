//! The feature store's domain API, independent of gRPC: ingest, features, series, profiles,
//! erasure. The tonic handlers in `service` only convert to and from protobuf.

use augur_runtime::error::MAX_ID_BYTES;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use augur_proto::featurestore as pb;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::Error;
use crate::features::{self, Column, Value, ViewKind};
use crate::model::{self, Event, EventKind, Hasher, Limits, Micros};
use crate::online::Online;
use crate::storage::{Store, StoreError, StoreOptions, StoredEvent};

/// Events applied per page when replaying the log.
const REPLAY_PAGE: u64 = 20_000;

/// One rejected event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub index: u64,
    pub event_id: String,
    pub field: String,
    pub reason: String,
}

/// What happened to a batch.
#[derive(Debug, Default, Clone)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected: Vec<Rejection>,
    pub watermark: u64,
}

impl IngestOutcome {
    pub fn merge(&mut self, other: Self) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected.extend(other.rejected);
        self.watermark = self.watermark.max(other.watermark);
    }
}

/// A feature table: column names and one row per entity (`None`: unknown entity).
#[derive(Debug, Clone)]
pub struct FeatureTable {
    pub names: Vec<String>,
    pub rows: Vec<Option<Vec<Value>>>,
}

pub struct App {
    store: Store,
    online: Online,
    hasher: Hasher,
    limits: Limits,
    max_batch: usize,
    max_rows: usize,
    /// Serialises writes. A writer takes `apply` before it releases `write` (lock coupling),
    /// so batches are applied in sequence order while the next batch is already being written.
    write: Mutex<()>,
    /// Serialises changes to the online state, in sequence order.
    apply: Mutex<()>,
    follow: bool,
}

/// Reads the hash key from config, or from `<data_dir>/feature-store.key`, creating it once.
fn hash_key(config: &Config) -> Result<Vec<u8>, Error> {
    if !config.hash_key.is_empty() {
        return Ok(config.hash_key.expose().as_bytes().to_vec());
    }
    let path = config.data_dir.join("feature-store.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim();
        if k.len() >= 32 {
            return Ok(k.as_bytes().to_vec());
        }
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::Internal(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let key: [u8; 32] = rand::random();
    let text = hex::encode(key);
    write_private(&path, &text)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(text.into_bytes())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())
    }
    #[cfg(not(unix))]
    std::fs::write(path, text)
}

impl App {
    /// Connects to storage, migrates, and rebuilds the online state from the event log.
    pub async fn open(config: &Config) -> Result<Arc<Self>, Error> {
        if config.is_sqlite() {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                Error::Internal(format!("cannot create {}: {e}", config.data_dir.display()))
            })?;
        }
        let store = Store::connect(&StoreOptions {
            url: config.database_url(),
            max_connections: config.database_max_connections,
            sqlite_synchronous: config.sqlite_synchronous.clone(),
        })
        .await?;
        let hasher = Hasher::new(&hash_key(config)?);
        let limits = Limits {
            max_text_bytes: config.max_text_bytes,
            ..Limits::default()
        };
        let app = Arc::new(Self {
            store,
            online: Online::new(hasher.clone()),
            hasher,
            limits,
            max_batch: config.max_batch_events,
            max_rows: config.max_feature_rows,
            write: Mutex::new(()),
            apply: Mutex::new(()),
            follow: !config.is_sqlite() && config.follow_interval_ms > 0,
        });
        let started = std::time::Instant::now();
        let n = app.catch_up().await?;
        let (customers, products) = app.online.counts();
        tracing::info!(
            events = n,
            customers,
            products,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "online state rebuilt from the event log"
        );
        Ok(app)
    }

    /// Whether this replica should follow writes of other replicas.
    pub fn follows(&self) -> bool {
        self.follow
    }

    /// Applies every stored event not applied yet (other replicas' writes, or everything at
    /// start). Returns the number applied.
    pub async fn catch_up(&self) -> Result<usize, Error> {
        let _g = self.apply.lock().await;
        self.catch_up_locked(i64::MAX).await
    }

    async fn catch_up_locked(&self, below: i64) -> Result<usize, Error> {
        let mut n = 0;
        loop {
            let after = self.online.applied();
            if after + 1 >= below {
                return Ok(n);
            }
            let page = self.store.events_after(after, below, REPLAY_PAGE).await?;
            for row in &page {
                self.apply_stored(row)?;
                n += 1;
            }
            if (page.len() as u64) < REPLAY_PAGE {
                // Everything below `below` is applied (sequence numbers may have gaps).
                if below < i64::MAX {
                    self.online.set_applied(below - 1);
                } else if let Some(last) = page.last() {
                    self.online.set_applied(last.seq);
                }
                return Ok(n);
            }
            if let Some(last) = page.last() {
                self.online.set_applied(last.seq);
            }
        }
    }

    fn apply_stored(&self, row: &StoredEvent) -> Result<(), Error> {
        if row.kind == EventKind::Erasure {
            let hashed = String::from_utf8_lossy(&row.payload).to_string();
            self.online.remove_customer_by_hash(&hashed);
            return Ok(());
        }
        let pbe = row.decode()?;
        let e = model::from_stored(&pbe).ok_or_else(|| {
            Error::Store(StoreError::Corrupt {
                seq: row.seq,
                reason: "payload does not decode into a known event".into(),
            })
        })?;
        self.online.apply(&e, row.seq);
        Ok(())
    }

    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    pub fn online(&self) -> &Online {
        &self.online
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Validates, deduplicates, stores and applies a batch. `offset` is the index of the first
    /// event in the client's stream (0 for a unary call). Returns only after the accepted
    /// events are committed.
    pub async fn ingest(
        &self,
        events: &[pb::Event],
        offset: u64,
        field: &str,
    ) -> Result<IngestOutcome, Error> {
        if events.len() > self.max_batch {
            return Err(Error::invalid(
                field,
                format!(
                    "batch of {} events is over the limit of {}; split it",
                    events.len(),
                    self.max_batch
                ),
            ));
        }
        let now = now_micros();
        let mut outcome = IngestOutcome::default();
        let mut good: Vec<Event> = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let index = offset + i as u64;
            let prefix = format!("{field}[{index}].");
            match model::validate_event(e, &prefix, &self.limits, &self.hasher, now) {
                Ok(ev) => good.push(ev),
                Err(errors) => outcome.rejected.push(rejection(index, e, errors)),
            }
        }
        let queued = std::time::Instant::now();
        let write = self.write.lock().await;
        // The database went away while this call waited for its turn: answer now.
        if !good.is_empty() {
            self.store.check_writable_since(queued)?;
        }
        let written = self.store.write_batch(&good, now).await?;
        let _apply = self.apply.lock().await;
        drop(write);
        if let Some(&(_, first)) = written.written.first() {
            // Another replica may have written in between: apply its events first.
            self.catch_up_locked(first).await?;
        }
        for &(i, seq) in &written.written {
            // The follower may already have applied this batch from the log.
            if seq > self.online.applied() {
                self.online.apply(&good[i], seq);
                self.online.set_applied(seq);
            }
        }
        outcome.accepted = written.written.len() as u64;
        outcome.duplicates = written.duplicates.len() as u64;
        outcome.watermark = self.online.applied().max(0) as u64;
        Ok(outcome)
    }

    fn check_rows(&self, field: &str, n: usize) -> Result<(), Error> {
        if n == 0 {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if n > self.max_rows {
            return Err(Error::invalid(
                field,
                format!(
                    "{n} rows is over the limit of {}; split the request",
                    self.max_rows
                ),
            ));
        }
        Ok(())
    }

    /// Current feature values.
    pub fn online_features(
        &self,
        view: &str,
        ids: &[String],
        features: &[String],
    ) -> Result<FeatureTable, Error> {
        let (kind, names, cols) = resolve(view, features)?;
        self.check_rows("entity_ids", ids.len())?;
        check_ids("entity_ids", ids)?;
        let now = now_micros();
        let rows = match kind {
            ViewKind::Customer => self.online.customer_rows(ids, &cols, now),
            ViewKind::Product => self.online.product_rows(ids, &cols, now),
        };
        Ok(FeatureTable { names, rows })
    }

    /// The RFM segment of each customer now (`None`: unknown), in order.
    pub fn customer_segments(
        &self,
        ids: &[String],
    ) -> Result<Vec<Option<crate::profile::Segment>>, Error> {
        self.check_rows("customer_ids", ids.len())?;
        check_ids("customer_ids", ids)?;
        Ok(crate::reads::segments_of(self, ids, now_micros()))
    }

    /// Point-in-time feature values: each row sees only events at or before its `as_of`.
    pub async fn historical_features(
        &self,
        view: &str,
        rows: &[(String, Micros)],
        features: &[String],
    ) -> Result<FeatureTable, Error> {
        let (kind, names, cols) = resolve(view, features)?;
        self.check_rows("rows", rows.len())?;
        for (i, (id, _)) in rows.iter().enumerate() {
            check_id(&format!("rows[{i}].entity_id"), id)?;
        }
        let out = match kind {
            ViewKind::Customer => {
                crate::historical::customers(&self.store, &self.online, rows, &cols).await?
            }
            ViewKind::Product => {
                crate::historical::products(&self.store, &self.online, rows, &cols).await?
            }
        };
        Ok(FeatureTable { names, rows: out })
    }

    /// Erases a customer everywhere.
    pub async fn erase_customer(&self, customer_id: &str) -> Result<u64, Error> {
        check_id("customer_id", customer_id)?;
        let queued = std::time::Instant::now();
        let write = self.write.lock().await;
        self.store.check_writable_since(queued)?;
        let _apply = self.apply.lock().await;
        drop(write);
        let hashed = self.hasher.hash(customer_id);
        let seqs = self.online.customer_seqs(&[customer_id.to_string()]);
        let (n, marker) = self
            .store
            .erase_customer(customer_id, &seqs, &hashed, now_micros())
            .await?;
        self.catch_up_locked(marker).await?;
        self.online.remove_customer(customer_id);
        self.online.set_applied(marker);
        tracing::info!(customer = %hashed, events = n, "customer erased");
        Ok(n)
    }

    /// Follows other replicas' writes until `stop` resolves.
    pub async fn follow_loop(
        self: Arc<Self>,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
            }
            match self.catch_up().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(events = n, "applied events of other replicas"),
                Err(e) => tracing::warn!(error = %e, "following the event log failed; retrying"),
            }
        }
    }
}

fn rejection(index: u64, e: &pb::Event, errors: Vec<model::FieldError>) -> Rejection {
    let event_id = match &e.payload {
        Some(pb::event::Payload::Order(o)) => o.order_id.clone(),
        Some(pb::event::Payload::Interaction(i)) => i.event_id.clone(),
        Some(pb::event::Payload::Review(r)) => r.review_id.clone(),
        Some(pb::event::Payload::Product(p)) => p.sku.clone(),
        Some(pb::event::Payload::Customer(c)) => c.customer_id.clone(),
        None => String::new(),
    };
    let mut it = errors.into_iter();
    let first = it.next().unwrap_or(model::FieldError {
        field: format!("events[{index}]"),
        reason: "invalid event".into(),
    });
    let rest: Vec<String> = it.map(|e| format!("{}: {}", e.field, e.reason)).collect();
    let reason = if rest.is_empty() {
        first.reason
    } else {
        format!("{}; also {}", first.reason, rest.join("; "))
    };
    Rejection {
        index,
        event_id: event_id.chars().take(128).collect(),
        field: first.field,
        reason,
    }
}

fn resolve(view: &str, features: &[String]) -> Result<(ViewKind, Vec<String>, Vec<Column>), Error> {
    let kind = ViewKind::parse(view).ok_or_else(|| {
        Error::invalid(
            "view",
            format!("unknown feature view {view:?}; expected \"customer\" or \"product\""),
        )
    })?;
    let (names, cols) = features::resolve_columns(kind, features).map_err(|(i, name)| {
        Error::invalid(
            format!("features[{i}]"),
            format!("unknown feature {name:?} in view {view:?} (see ListFeatureViews)"),
        )
    })?;
    Ok((kind, names, cols))
}

fn check_id(field: &str, id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::invalid(field, "missing id"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid(
            field,
            format!("id longer than {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn check_ids(field: &str, ids: &[String]) -> Result<(), Error> {
    for (i, id) in ids.iter().enumerate() {
        check_id(&format!("{field}[{i}]"), id)?;
    }
    Ok(())
}

pub fn now_micros() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// Groups row indexes by entity, for batched historical reads.
pub(crate) fn group_rows(rows: &[(String, Micros)]) -> HashMap<&str, Vec<usize>> {
    let mut by: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, (id, _)) in rows.iter().enumerate() {
        by.entry(id.as_str()).or_default().push(i);
    }
    by
}
