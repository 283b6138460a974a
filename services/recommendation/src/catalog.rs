//! The product catalogue as the re-ranking needs it (stock, active, price, category, recent
//! sales), read from the feature store's online product features and cached. A refresh runs
//! when the copy is older than the refresh interval; while the feature store is down the last
//! copy keeps serving and answers say `degraded`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use augur_proto::common::PageRequest;
use augur_proto::featurestore as fs;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::featurestore::feature_value::Value;
use augur_runtime::client::ServiceChannel;

use crate::error::Error;

/// How old the cached catalogue may get before a refresh starts.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How long the first request waits for a catalogue that was never loaded.
pub const FIRST_LOAD_WAIT: Duration = Duration::from_millis(1500);

/// One product as the re-ranking sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProductInfo {
    pub category_path: Vec<String>,
    pub price: Option<f64>,
    pub stock: Option<i64>,
    pub active: bool,
    pub units_7d: f64,
}

impl ProductInfo {
    /// Sellable: active and in stock (unknown stock counts as available).
    pub fn available(&self) -> bool {
        self.active && self.stock.is_none_or(|s| s > 0)
    }

    pub fn leaf(&self) -> Option<&str> {
        self.category_path.last().map(String::as_str)
    }
}

/// A snapshot of the catalogue.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub products: HashMap<String, ProductInfo>,
    /// Largest `units_7d` over the catalogue (for the recent-sales share).
    pub max_units_7d: f64,
    pub loaded: bool,
}

impl Catalog {
    pub fn get(&self, sku: &str) -> Option<&ProductInfo> {
        self.products.get(sku)
    }

    /// Products without a catalogue record count as available.
    pub fn available(&self, sku: &str) -> bool {
        self.products.get(sku).is_none_or(ProductInfo::available)
    }

    /// Recent sales share of a product in [0, 1].
    pub fn sales_share(&self, sku: &str) -> f64 {
        match self.products.get(sku) {
            Some(p) if self.max_units_7d > 0.0 => p.units_7d / self.max_units_7d,
            _ => 0.0,
        }
    }
}

const FEATURES: [&str; 5] = ["price", "stock", "active", "category", "units_7d"];

/// One feature-store call, bounded by `limit`: a hung feature store answers
/// [`Error::FeatureStoreTimeout`], a failed call [`Error::FeatureStore`].
async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, call).await {
        Ok(r) => r
            .map(tonic::Response::into_inner)
            .map_err(Error::feature_store),
        Err(_) => Err(Error::FeatureStoreTimeout(limit)),
    }
}

/// Reads every product's online features, each call bounded by `call_timeout`.
pub async fn fetch(
    client: &mut FeatureStoreClient<ServiceChannel>,
    call_timeout: Duration,
) -> Result<Catalog, Error> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let r = within(
            call_timeout,
            client.list_entities(fs::ListEntitiesRequest {
                entity: "product".into(),
                page: Some(PageRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                }),
            }),
        )
        .await?;
        ids.extend(r.entity_ids);
        if r.next_page_token.is_empty() || r.next_page_token == token {
            break;
        }
        token = r.next_page_token;
    }
    let mut cat = Catalog {
        loaded: true,
        ..Default::default()
    };
    for chunk in ids.chunks(1000) {
        let r = within(
            call_timeout,
            client.get_online_features(fs::GetOnlineFeaturesRequest {
                view: "product".into(),
                entity_ids: chunk.to_vec(),
                features: FEATURES.iter().map(|s| s.to_string()).collect(),
            }),
        )
        .await?;
        let col = |name: &str| r.feature_names.iter().position(|n| n == name);
        let (ip, is, ia, ic, iu) = (
            col("price"),
            col("stock"),
            col("active"),
            col("category"),
            col("units_7d"),
        );
        for row in r.rows {
            if !row.found {
                continue;
            }
            let v = |i: Option<usize>| {
                i.and_then(|i| row.values.get(i))
                    .and_then(|v| v.value.clone())
            };
            let num = |x: Option<Value>| match x {
                Some(Value::DoubleValue(d)) => Some(d),
                Some(Value::Int64Value(i)) => Some(i as f64),
                _ => None,
            };
            let info = ProductInfo {
                price: num(v(ip)),
                stock: num(v(is)).map(|s| s as i64),
                active: !matches!(v(ia), Some(Value::BoolValue(false))),
                category_path: match v(ic) {
                    Some(Value::StringValue(s)) if !s.is_empty() => {
                        s.split(" > ").map(str::to_string).collect()
                    }
                    _ => Vec::new(),
                },
                units_7d: num(v(iu)).unwrap_or(0.0),
            };
            cat.max_units_7d = cat.max_units_7d.max(info.units_7d);
            cat.products.insert(row.entity_id, info);
        }
    }
    Ok(cat)
}

/// The cached catalogue with its refresh state.
#[derive(Debug)]
pub struct CatalogCache {
    current: ArcSwap<Catalog>,
    fetched_at: std::sync::Mutex<Option<Instant>>,
    refreshing: AtomicBool,
    healthy: AtomicBool,
    first_load: tokio::sync::Mutex<()>,
    client: FeatureStoreClient<ServiceChannel>,
    /// Bound of each feature-store call of a refresh (`feature_store_timeout_ms`), so that a
    /// hung feature store does not hold the refresh (and block the next one) for long.
    call_timeout: Duration,
}

impl CatalogCache {
    pub fn new(client: FeatureStoreClient<ServiceChannel>) -> Self {
        CatalogCache {
            current: ArcSwap::from_pointee(Catalog::default()),
            fetched_at: std::sync::Mutex::new(None),
            refreshing: AtomicBool::new(false),
            healthy: AtomicBool::new(false),
            first_load: tokio::sync::Mutex::new(()),
            client,
            call_timeout: augur_runtime::config::DEFAULT_FEATURE_STORE_TIMEOUT,
        }
    }

    /// The same cache, each feature-store call of a refresh bounded by `limit`.
    pub fn with_call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = limit;
        self
    }

    /// Refreshes now; on failure the old copy stays and the cache is marked unhealthy.
    pub async fn refresh(&self) -> bool {
        let mut client = self.client.clone();
        let ok = match fetch(&mut client, self.call_timeout).await {
            Ok(c) => {
                self.current.store(Arc::new(c));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "catalogue refresh failed; serving the last copy");
                false
            }
        };
        self.healthy.store(ok, Ordering::Relaxed);
        if let Ok(mut t) = self.fetched_at.lock() {
            *t = Some(Instant::now());
        }
        ok
    }

    /// The catalogue to use now and whether the answer is degraded. Starts a background refresh
    /// when stale; waits (briefly) only when nothing was ever attempted.
    pub async fn snapshot(self: &Arc<Self>) -> (Arc<Catalog>, bool) {
        let last = self.fetched_at.lock().ok().and_then(|t| *t);
        match last {
            None => {
                // Every early request waits (briefly) for the one first load, so that none is
                // answered from an empty catalogue while it is on its way.
                let first = async {
                    let _guard = self.first_load.lock().await;
                    let never = self.fetched_at.lock().ok().is_some_and(|t| t.is_none());
                    if never {
                        self.refresh().await;
                    }
                };
                if tokio::time::timeout(FIRST_LOAD_WAIT, first).await.is_err() {
                    // Too slow: answer degraded now, retry in the background later.
                    self.healthy.store(false, Ordering::Relaxed);
                    if let Ok(mut t) = self.fetched_at.lock() {
                        t.get_or_insert_with(Instant::now);
                    }
                }
            }
            Some(t) if t.elapsed() > REFRESH_EVERY => {
                if !self.refreshing.swap(true, Ordering::AcqRel) {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.refresh().await;
                        me.refreshing.store(false, Ordering::Release);
                    });
                }
            }
            Some(_) => {}
        }
        (
            self.current.load_full(),
            !self.healthy.load(Ordering::Relaxed),
        )
    }
}
