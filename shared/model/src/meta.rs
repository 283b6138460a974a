use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use augur_proto::common::{ModelInfo, TimeRange};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The metadata saved as `meta.json` beside every model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Model family, e.g. `recommender`, `churn`.
    pub name: String,
    /// Unique, sortable version, e.g. `20261128T064512.123456Z-3f9a`.
    pub version: String,
    pub trained_at: DateTime<Utc>,
    /// Time range of the training data (inclusive), where the data has timestamps.
    pub data_start: Option<DateTime<Utc>>,
    pub data_end: Option<DateTime<Utc>>,
    pub training_examples: i64,
    /// Metrics on the validation split (never the test split of a benchmark).
    pub validation_metrics: BTreeMap<String, f64>,
    /// Hyper-parameters and anything else worth showing (`strategy`, `lambda`, ...).
    pub parameters: BTreeMap<String, String>,
    pub description: String,
}

/// A new unique version string: UTC time to the microsecond plus 4 random hex digits, e.g.
/// `20261128T064512.123456Z-3f9a`, so that versions sort by creation time. Two trainings in the
/// same second (one replica after another, or a retrain right after a train) must still sort in
/// the order they were made, or the reload watcher would not take the newer one: within one
/// process the time part is strictly increasing even if the clock is not; across processes the
/// microseconds order them and the salt keeps equal times from colliding.
pub fn new_version(now: DateTime<Utc>) -> String {
    static LAST_MICROS: AtomicI64 = AtomicI64::new(i64::MIN);
    version_after(&LAST_MICROS, now)
}

/// [`new_version`] with the last time part handed out kept in `last`.
fn version_after(last: &AtomicI64, now: DateTime<Utc>) -> String {
    let wanted = now.timestamp_micros();
    let next = |prev: i64| wanted.max(prev.saturating_add(1));
    let micros = match last.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(next(p))) {
        Ok(prev) | Err(prev) => next(prev),
    };
    let at = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(now);
    let salt: u16 = rand::random();
    format!("{}-{salt:04x}", at.format("%Y%m%dT%H%M%S%.6fZ"))
}

impl ModelMeta {
    /// Metadata for a model trained now, with a fresh version.
    pub fn new(name: impl Into<String>) -> Self {
        let now = Utc::now();
        ModelMeta {
            name: name.into(),
            version: new_version(now),
            trained_at: now,
            data_start: None,
            data_end: None,
            training_examples: 0,
            validation_metrics: BTreeMap::new(),
            parameters: BTreeMap::new(),
            description: String::new(),
        }
    }

    pub fn to_proto(&self) -> ModelInfo {
        let ts = |t: DateTime<Utc>| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        };
        ModelInfo {
            model_name: self.name.clone(),
            model_version: self.version.clone(),
            trained_at: Some(ts(self.trained_at)),
            training_data: (self.data_start.is_some() || self.data_end.is_some()).then(|| {
                TimeRange {
                    start: self.data_start.map(ts),
                    end: self.data_end.map(ts),
                }
            }),
            training_examples: self.training_examples,
            validation_metrics: self.validation_metrics.clone(),
            parameters: self.parameters.clone(),
            description: self.description.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_time() {
        let last = AtomicI64::new(i64::MIN);
        let a = version_after(&last, "2026-01-01T00:00:00Z".parse().unwrap());
        let b = version_after(&last, "2026-01-01T00:00:01Z".parse().unwrap());
        assert!(a < b, "{a} {b}");
        assert!(a.starts_with("20260101T000000."), "{a}");
    }

    #[test]
    fn versions_made_in_the_same_second_sort_in_creation_order() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let last = AtomicI64::new(i64::MIN);
        let made: Vec<String> = (0..200).map(|_| version_after(&last, now)).collect();
        assert!(
            made[0].starts_with("20260101T000000.000000Z-"),
            "{}",
            made[0]
        );
        for w in made.windows(2) {
            assert!(w[0] < w[1], "{} then {}", w[0], w[1]);
        }
        // A clock that steps back does not make an older-sorting version either.
        let earlier = version_after(&last, now - chrono::Duration::seconds(5));
        assert!(earlier > made[199], "{earlier} after {}", made[199]);
    }

    #[test]
    fn proto_carries_metrics_and_range() {
        let mut m = ModelMeta::new("churn");
        m.validation_metrics.insert("roc_auc".into(), 0.8);
        m.data_end = Some("2026-01-01T00:00:00Z".parse().unwrap());
        let p = m.to_proto();
        assert_eq!(p.validation_metrics["roc_auc"], 0.8);
        assert_eq!(p.training_data.unwrap().end.unwrap().seconds, 1_767_225_600);
    }
}
