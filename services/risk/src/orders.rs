//! Order fraud scoring: the order features (basket, countries, velocity, customer history), the
//! rules with their reasons, and the order model (calibrated supervised scorer where labels exist
//! plus an isolation-forest anomaly model).

use std::collections::{BTreeMap, HashMap};

use augur_model::ModelMeta;
use augur_proto::common::Factor;
use augur_proto::featurestore::Order;
use serde::{Deserialize, Serialize};

use crate::tabular::{Cell, Encoder, IsolationForest, TabularModel};

/// The order features the service computes, in column order.
pub const ORDER_FEATURES: &[(&str, &str, &str)] = &[
    ("log_total", "log(1 + order total)", "log EUR"),
    (
        "value_vs_usual",
        "order total / the customer's average order value",
        "x",
    ),
    (
        "country_mismatch",
        "billing and shipping country differ",
        "bool",
    ),
    (
        "billing_abroad",
        "billing country differs from the customer's country",
        "bool",
    ),
    (
        "account_age_hours",
        "hours since the customer signed up",
        "h",
    ),
    (
        "prior_orders",
        "orders the customer placed before",
        "orders",
    ),
    (
        "prior_chargebacks",
        "charge-backs on the customer's earlier orders",
        "orders",
    ),
    (
        "device_orders_10m",
        "orders from the same device fingerprint in the last 10 minutes, this one included",
        "orders",
    ),
    ("lines", "order lines", "lines"),
    ("units", "units in the basket", "units"),
    ("payment_method", "payment method", ""),
];

/// Velocity window.
pub const VELOCITY_WINDOW_SECS: i64 = 600;

/// The customer's history before the order (from the feature store).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerHistory {
    pub known: bool,
    pub avg_order_value: Option<f64>,
    pub orders: Option<f64>,
    pub chargebacks: Option<f64>,
    pub tenure_days: Option<f64>,
    pub country: Option<String>,
}

/// Everything the order model looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFacts {
    pub order_id: String,
    pub total: f64,
    pub lines: usize,
    pub units: i64,
    pub shipping_country: String,
    pub billing_country: String,
    pub payment_method: String,
    pub history: CustomerHistory,
    pub device_orders_10m: u32,
}

/// The order's total: `total` when set, else the sum of its lines.
pub fn order_total(o: &Order) -> f64 {
    o.total.unwrap_or_else(|| {
        o.lines
            .iter()
            .map(|l| l.quantity as f64 * l.unit_price)
            .sum()
    })
}

impl OrderFacts {
    pub fn new(o: &Order, history: CustomerHistory, device_orders_10m: u32) -> Self {
        OrderFacts {
            order_id: o.order_id.clone(),
            total: order_total(o),
            lines: o.lines.len(),
            units: o.lines.iter().map(|l| l.quantity).sum(),
            shipping_country: o.shipping_country.to_uppercase(),
            billing_country: o.billing_country.to_uppercase(),
            payment_method: o.payment_method.to_lowercase(),
            history,
            device_orders_10m,
        }
    }

    fn value_vs_usual(&self) -> Option<f64> {
        match (self.history.avg_order_value, self.history.orders) {
            (Some(a), Some(n)) if a > 0.0 && n >= 1.0 => Some(self.total / a),
            _ => None,
        }
    }

    /// The feature cells in [`ORDER_FEATURES`] order.
    pub fn cells(&self) -> Vec<Cell> {
        let num = |v: Option<f64>| v.map_or(Cell::Missing, Cell::Num);
        let flag = |b: bool| Cell::Num(if b { 1.0 } else { 0.0 });
        let mismatch = !self.shipping_country.is_empty()
            && !self.billing_country.is_empty()
            && self.shipping_country != self.billing_country;
        let abroad = match &self.history.country {
            Some(c) if !self.billing_country.is_empty() => {
                flag(c.to_uppercase() != self.billing_country)
            }
            _ => Cell::Missing,
        };
        vec![
            Cell::Num((1.0 + self.total.max(0.0)).ln()),
            num(self.value_vs_usual()),
            flag(mismatch),
            abroad,
            num(self.history.tenure_days.map(|d| d * 24.0)),
            Cell::Num(self.history.orders.unwrap_or(0.0)),
            Cell::Num(self.history.chargebacks.unwrap_or(0.0)),
            Cell::Num(self.device_orders_10m as f64),
            Cell::Num(self.lines as f64),
            Cell::Num(self.units as f64),
            if self.payment_method.is_empty() {
                Cell::Missing
            } else {
                Cell::Cat(self.payment_method.clone())
            },
        ]
    }
}

/// Decision thresholds on the score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub review: f64,
    pub reject: f64,
}

/// A decision (ordered by severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    Approve,
    Review,
    Reject,
}

impl Decision {
    pub fn to_proto(self) -> i32 {
        use augur_proto::risk::Decision as D;
        match self {
            Decision::Approve => D::Approve as i32,
            Decision::Review => D::Review as i32,
            Decision::Reject => D::Reject as i32,
        }
    }
}

impl Thresholds {
    pub fn decide(&self, score: f64) -> Decision {
        if score >= self.reject {
            Decision::Reject
        } else if score >= self.review {
            Decision::Review
        } else {
            Decision::Approve
        }
    }
}

/// The saved order model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderModel {
    /// Feature columns of the model (the order features, or a labelled table's columns).
    pub columns: Vec<String>,
    pub supervised: Option<TabularModel>,
    pub anomaly_encoder: Encoder,
    pub anomaly: IsolationForest,
    pub thresholds: Thresholds,
    /// Order total above which a basket counts as high value (95th percentile of training).
    pub high_value: f64,
    /// Calibration of the anomaly percentile when the anomaly model is the scorer (it beat the
    /// supervised model on the validation split, or there were too few labels).
    #[serde(default)]
    pub anomaly_platt: Option<augur_model::calibrate::Platt>,
    /// Training distribution of the numeric columns, saved as its own file
    /// (`feature_reference.json`) for the drift statistics; None in older artefacts.
    #[serde(skip)]
    pub reference: Option<augur_model::monitor::FeatureReference>,
}

/// The score of one order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderScore {
    pub score: f64,
    pub decision: Decision,
    pub factors: Vec<Factor>,
    pub rules: Vec<Factor>,
    pub anomaly_score: f64,
}

fn describe(name: &str) -> (&'static str, &'static str) {
    ORDER_FEATURES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or(("", ""), |(_, d, u)| (*d, *u))
}

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Num(v) => {
            if v.fract() == 0.0 && v.abs() < 1e12 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        }
        Cell::Cat(s) => s.clone(),
        Cell::Missing => "missing".into(),
    }
}

/// Rows of the model's columns filled from the order features by name.
pub fn align(columns: &[String], facts: &OrderFacts) -> Vec<Cell> {
    let cells = facts.cells();
    columns
        .iter()
        .map(|c| {
            ORDER_FEATURES
                .iter()
                .position(|(n, _, _)| n == c)
                .map_or(Cell::Missing, |i| cells[i].clone())
        })
        .collect()
}

/// The rules that fired for an order; the decision they force at least.
pub fn rules(facts: &OrderFacts, high_value: f64) -> (Vec<Factor>, Decision) {
    let mut out = Vec::new();
    let mut floor = Decision::Approve;
    if !facts.shipping_country.is_empty()
        && !facts.billing_country.is_empty()
        && facts.shipping_country != facts.billing_country
    {
        out.push(Factor {
            name: "rule:country_mismatch".into(),
            contribution: 0.0,
            value: format!("{} / {}", facts.billing_country, facts.shipping_country),
            description: format!(
                "billing country {} and shipping country {} differ",
                facts.billing_country, facts.shipping_country
            ),
            unit: String::new(),
        });
    }
    if let Some(r) = facts.value_vs_usual()
        && r >= 5.0
    {
        out.push(Factor {
            name: "rule:value_vs_usual".into(),
            contribution: 0.0,
            value: format!("{r:.1}"),
            description: format!("order value {r:.0}x the customer's usual"),
            unit: "x".into(),
        });
    }
    if facts.device_orders_10m >= 3 {
        floor = floor.max(Decision::Review);
        out.push(Factor {
            name: "rule:device_velocity".into(),
            contribution: 0.0,
            value: facts.device_orders_10m.to_string(),
            description: format!(
                "{} orders from one device in 10 minutes (forces review)",
                facts.device_orders_10m
            ),
            unit: "orders".into(),
        });
    }
    if let Some(days) = facts.history.tenure_days
        && days < 1.0
        && facts.total >= high_value
    {
        floor = floor.max(Decision::Review);
        out.push(Factor {
            name: "rule:new_account_high_value".into(),
            contribution: 0.0,
            value: format!("{:.1} h, {:.2}", days * 24.0, facts.total),
            description: format!(
                "account {:.1} hours old with a high-value basket ({:.2}, above {:.2}; forces review)",
                days * 24.0,
                facts.total,
                high_value
            ),
            unit: String::new(),
        });
    }
    (out, floor)
}

impl OrderModel {
    /// Scores encoded cells (in `self.columns` order) and the facts the rules look at.
    pub fn score_cells(&self, cells: &[Cell], facts: Option<&OrderFacts>) -> OrderScore {
        let ax = self.anomaly_encoder.encode(cells);
        let anomaly_score = self.anomaly.percentile(&ax);
        let mut factors = Vec::new();
        let score = match &self.supervised {
            Some(m) => {
                let p = m.predict(cells);
                for c in m.contributions(cells) {
                    let name = &self.columns[c.column];
                    let (d, u) = describe(name);
                    factors.push(Factor {
                        name: name.clone(),
                        contribution: c.value,
                        value: cell_text(&cells[c.column]),
                        description: if d.is_empty() {
                            name.clone()
                        } else {
                            d.to_string()
                        },
                        unit: u.to_string(),
                    });
                }
                p
            }
            None => self
                .anomaly_platt
                .map_or(anomaly_score, |p| p.apply(anomaly_score)),
        };
        // The anomaly model's share: the columns furthest from their training distribution.
        let mut dev: Vec<(usize, f64)> = Vec::new();
        for (j, v) in ax.iter().enumerate() {
            let c = self.anomaly_encoder.owner[j];
            if let Some(e) = dev.iter_mut().find(|(k, _)| *k == c) {
                e.1 = e.1.max(v.abs() as f64);
            } else {
                dev.push((c, v.abs() as f64));
            }
        }
        dev.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total_dev: f64 = dev.iter().take(2).map(|d| d.1).sum::<f64>().max(1e-9);
        for (c, d) in dev.into_iter().take(2) {
            let name = &self.columns[c];
            let (desc, u) = describe(name);
            factors.push(Factor {
                name: format!("anomaly:{name}"),
                contribution: anomaly_score * d / total_dev,
                value: cell_text(&cells[c]),
                description: format!(
                    "unusual {} ({:.1} standard deviations from training orders)",
                    if desc.is_empty() { name.as_str() } else { desc },
                    d
                ),
                unit: u.to_string(),
            });
        }
        factors.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        factors.truncate(6);
        let (rules, floor) = match facts {
            Some(f) => rules(f, self.high_value),
            None => (Vec::new(), Decision::Approve),
        };
        let decision = self.thresholds.decide(score).max(floor);
        OrderScore {
            score,
            decision,
            factors,
            rules,
            anomaly_score,
        }
    }

    pub fn score(&self, facts: &OrderFacts) -> OrderScore {
        let cells = align(&self.columns, facts);
        self.score_cells(&cells, Some(facts))
    }

    /// Parameters for ModelInfo.
    pub fn describe(&self, meta: &mut ModelMeta) {
        meta.parameters
            .insert("decision.review".into(), self.thresholds.review.to_string());
        meta.parameters
            .insert("decision.reject".into(), self.thresholds.reject.to_string());
        meta.parameters
            .insert("features".into(), self.columns.join(","));
        meta.parameters.insert(
            "scorer".into(),
            self.supervised.as_ref().map_or(
                if self.anomaly_platt.is_some() {
                    "isolation_forest + platt (beat the supervised scorer on validation)".into()
                } else {
                    "isolation_forest (unsupervised)".into()
                },
                |m| format!("{} + platt, isolation_forest anomaly", m.learner.name()),
            ),
        );
        meta.parameters
            .insert("high_value_total".into(), format!("{:.2}", self.high_value));
    }
}

/// A training example built from the feature store's orders.
#[derive(Debug, Clone)]
pub struct OrderExample {
    pub order: Order,
    pub ts: i64,
    pub charged_back: bool,
}

/// Groups order events by id: the first event of each order (its placement) with the label
/// "ever charged back".
pub fn examples(events: Vec<Order>) -> Vec<OrderExample> {
    let mut by_id: HashMap<String, OrderExample> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for o in events {
        let ts = o.ts.as_ref().map_or(0, |t| t.seconds);
        let cb = o.status == augur_proto::featurestore::OrderStatus::ChargedBack as i32;
        match by_id.get_mut(&o.order_id) {
            Some(e) => {
                e.charged_back |= cb;
                if ts < e.ts {
                    e.ts = ts;
                    e.order = o;
                }
            }
            None => {
                order.push(o.order_id.clone());
                by_id.insert(
                    o.order_id.clone(),
                    OrderExample {
                        order: o,
                        ts,
                        charged_back: cb,
                    },
                );
            }
        }
    }
    let mut v: Vec<OrderExample> = order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect();
    v.sort_by_key(|e| e.ts);
    v
}

/// Orders from the same device within the velocity window before each example (itself
/// included), computed over the examples (sorted by time).
pub fn device_velocity(ex: &[OrderExample]) -> Vec<u32> {
    let mut recent: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut out = Vec::with_capacity(ex.len());
    for e in ex {
        let d = e.order.device_fingerprint.as_str();
        if d.is_empty() {
            out.push(1);
            continue;
        }
        let v = recent.entry(d).or_default();
        v.retain(|&t| t > e.ts - VELOCITY_WINDOW_SECS);
        v.push(e.ts);
        out.push(v.len() as u32);
    }
    out
}

/// Column names of the order features.
pub fn order_columns() -> Vec<String> {
    ORDER_FEATURES
        .iter()
        .map(|(n, _, _)| n.to_string())
        .collect()
}

/// Metrics map helper.
pub fn metric_map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}
