//! The served churn model: input columns, fitted BTYD models, the neural additive model, the
//! calibration, and what a prediction for one customer is.

use std::collections::HashMap;
use std::sync::Arc;

use augur_model::calibrate::Platt;
use augur_model::monitor::FeatureReference;
use augur_model::{Artifact, ModelError, ModelMeta};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::features::{self, Btyd, Column, Groups, PerAnswer, Plan, Record};
use crate::nam::Nam;

pub const MODEL_NAME: &str = "churn";
const SPEC_FILE: &str = "spec.json";
/// The training distribution of the monitored input features (see [`monitored_features`]).
pub const REFERENCE_FILE: &str = "feature_reference.json";

/// Everything but the network weights, saved as `spec.json` beside the safetensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub columns: Vec<Column>,
    pub btyd: Btyd,
    pub platt: Platt,
    pub horizon_days: u32,
    /// Probability thresholds of the medium, high and critical tiers.
    pub tiers: [f64; 3],
    /// Actual / BG/NBD-predicted purchases over the past-only label windows: the correction
    /// applied to expected purchases.
    pub purchase_scale: f64,
    /// Mean order value over the training customers (for customers without one).
    pub default_order_value: f64,
    pub currency: String,
    /// Which combination won on validation (one of [`crate::train::VARIANTS`]).
    pub variant: String,
    /// When the label windows were shorter than the horizon: a second Platt map, applied to the
    /// log-odds of the calibrated probability, fitted on a past-only rehearsal of the same stretch
    /// (see [`crate::train::rehearsal_params`]). `None`: no stretch, or no room to rehearse it.
    #[serde(default)]
    pub horizon_stretch: Option<Platt>,
}

/// One factor of an explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    /// The factor group (shared by every prediction of a batch).
    pub name: Arc<str>,
    pub contribution: f64,
    pub value: String,
    pub description: String,
}

/// A churn prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub probability: f64,
    /// The network's log-odds before calibration (= base + sum of every factor).
    pub logit: f64,
    pub base: f64,
    /// Every factor group, largest |contribution| first.
    pub factors: Vec<Factor>,
    pub expected_purchases: f64,
    pub expected_value: f64,
    /// Revenue in the horizon if retained (used for value at risk).
    pub value_if_retained: f64,
    pub tier: Tier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Low,
    Medium,
    High,
    Critical,
}

/// The model being served.
#[derive(Debug, Clone)]
pub struct ChurnModel {
    pub meta: ModelMeta,
    pub spec: Spec,
    pub nam: Nam,
    /// Training distribution of [`monitored_features`] (None: saved before drift monitoring).
    pub reference: Option<FeatureReference>,
}

/// The input features whose drift is monitored: every feature-store number a column of the model
/// reads, named as in the feature store (the factor groups), in column order.
pub fn monitored_features(columns: &[Column]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in columns {
        if let features::Source::Numeric { feature, .. } = &c.source
            && !out.contains(feature)
        {
            out.push(feature.clone());
        }
    }
    out
}

/// The values of `names` in a record (NaN = missing), in the reference's order.
pub fn feature_vector(names: &[String], rec: &Record) -> Vec<f64> {
    names
        .iter()
        .map(|n| rec.get(n).unwrap_or(f64::NAN))
        .collect()
}

/// Fits the reference of the monitored features on training records.
pub fn fit_reference<'a>(
    columns: &[Column],
    recs: impl IntoIterator<Item = &'a Record>,
) -> FeatureReference {
    let names = monitored_features(columns);
    let rows: Vec<Vec<f64>> = recs
        .into_iter()
        .map(|r| feature_vector(&names, r))
        .collect();
    FeatureReference::fit(names, &rows)
}

impl ChurnModel {
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        self.nam.tensors("nam")
    }

    pub fn spec_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(&self.spec).map_err(|e| Error::Internal(e.to_string()))
    }

    pub fn from_artifact(a: &Artifact) -> Result<ChurnModel> {
        let spec: Spec = serde_json::from_slice(&a.extra(SPEC_FILE)?)
            .map_err(|e| Error::Internal(format!("{SPEC_FILE}: {e}")))?;
        let nam = Nam::from_tensors(&a.tensors, "nam")?;
        // Older artefacts have no reference: served without drift statistics.
        let reference = match a.extra(REFERENCE_FILE) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Internal(format!("{REFERENCE_FILE}: {e}")))?,
            ),
            Err(ModelError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(ChurnModel {
            meta: a.meta.clone(),
            spec,
            nam,
            reference,
        })
    }

    pub fn save(&self, store: &augur_model::ArtifactStore) -> Result<()> {
        let spec = self.spec_json()?;
        let reference = match &self.reference {
            Some(r) => Some(serde_json::to_vec(r).map_err(|e| Error::Internal(e.to_string()))?),
            None => None,
        };
        let mut extra: Vec<(&str, &[u8])> = vec![(SPEC_FILE, &spec)];
        if let Some(r) = &reference {
            extra.push((REFERENCE_FILE, r));
        }
        store.save(&self.meta, &self.tensors()?, &extra)?;
        store.prune(5)?;
        Ok(())
    }

    /// Feature-store features a prediction needs.
    pub fn needed_features(&self) -> Vec<String> {
        features::needed_features(&self.spec.columns)
    }

    /// The served probability of a network log-odds: Platt, then the horizon-stretch map if any.
    pub fn probability(&self, logit: f64) -> f64 {
        let p = self.spec.platt.apply(logit);
        match &self.spec.horizon_stretch {
            Some(s) => s.apply(features::logit(p)),
            None => p,
        }
    }

    pub fn tier(&self, p: f64) -> Tier {
        let [m, h, c] = self.spec.tiers;
        if p >= c {
            Tier::Critical
        } else if p >= h {
            Tier::High
        } else if p >= m {
            Tier::Medium
        } else {
            Tier::Low
        }
    }

    /// The prediction for one customer from their features (over the model's horizon), every
    /// factor described.
    pub fn predict(&self, rec: &Record) -> Prediction {
        self.predict_top(rec, usize::MAX)
    }

    /// The prediction with every factor's contribution, but only the `described` largest ones
    /// carrying a value and a sentence (the rest keep empty texts).
    pub fn predict_top(&self, rec: &Record, described: usize) -> Prediction {
        let plan = Plan::new(&self.spec.columns, rec.schema());
        self.predict_with(&plan, &Groups::new(&self.spec.columns), rec, described)
    }

    /// [`Self::predict_top`] of every record (`None` stays `None`), in order, with one plan per
    /// feature-store answer instead of name lookups per customer.
    pub fn predict_batch(
        &self,
        recs: Vec<Option<Record>>,
        described: usize,
    ) -> Vec<Option<(Record, Prediction)>> {
        let groups = Groups::new(&self.spec.columns);
        let mut plans = PerAnswer::default();
        recs.into_iter()
            .map(|r| {
                r.map(|r| {
                    let plan = plans.get(&r, |s| Plan::new(&self.spec.columns, s));
                    let p = self.predict_with(plan, &groups, &r, described);
                    (r, p)
                })
            })
            .collect()
    }

    /// [`Self::predict_top`] with the plan for `rec`'s schema and the model's factor groups.
    fn predict_with(
        &self,
        plan: &Plan,
        groups: &Groups,
        rec: &Record,
        described: usize,
    ) -> Prediction {
        let hd = self.spec.horizon_days;
        let hw = f64::from(hd) / 7.0;
        let btyd = plan
            .rfm(rec)
            .map(|c| features::BtydValues::of_rfm(&c, &self.spec.btyd, hw));
        let x = plan.encode(&self.spec.columns, rec, btyd.as_ref());
        let (base, contrib) = self.nam.explain(&x);
        let logit = base + contrib.iter().sum::<f64>();
        let probability = self.probability(logit);
        let mut sums = vec![0.0; groups.names.len()];
        for (&g, v) in groups.of.iter().zip(&contrib) {
            sums[g] += v;
        }
        let mut factors: Vec<Factor> = groups
            .names
            .iter()
            .zip(sums)
            .map(|(g, v)| Factor {
                name: g.clone(),
                contribution: v,
                value: String::new(),
                description: String::new(),
            })
            .collect();
        factors.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        for f in factors.iter_mut().take(described) {
            (f.value, f.description) = features::describe(&f.name, rec, btyd.as_ref(), hd);
        }
        let aov = rec
            .get("avg_order_value")
            .filter(|v| *v > 0.0)
            .unwrap_or(self.spec.default_order_value);
        let (expected_purchases, if_alive) = match &btyd {
            Some(v) => {
                let e = v.bg_expected * self.spec.purchase_scale;
                (e, e / v.bg_p_alive.max(1e-3))
            }
            None => (0.0, 0.0),
        };
        Prediction {
            probability,
            logit,
            base,
            factors,
            expected_purchases,
            expected_value: expected_purchases * aov,
            value_if_retained: if_alive * aov,
            tier: self.tier(probability),
        }
    }
}
