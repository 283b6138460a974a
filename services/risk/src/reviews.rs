//! Review spam / fake scoring: behaviour and text features around a sentence embedding
//! (near-duplicates, bursts on one product, rating vs. the text's sentiment, links and
//! promotional terms, reviewer history), a calibrated classifier where SPAM labels exist and an
//! isolation forest otherwise, and the rules with their reasons.

use augur_proto::common::Factor;
use serde::{Deserialize, Serialize};

use crate::embed::dot;
use crate::orders::{Decision, Thresholds};
use crate::tabular::{Cell, Encoder, IsolationForest, TabularModel};
use crate::text::{link_count, promo_terms};

/// The review features, in column order: (name, description, unit).
pub const REVIEW_FEATURES: &[(&str, &str, &str)] = &[
    (
        "max_similarity_to_other_reviews",
        "cosine similarity to the most similar other review",
        "cosine",
    ),
    (
        "near_duplicates",
        "other reviews with cosine similarity >= 0.9",
        "reviews",
    ),
    (
        "reviews_on_product_last_hour",
        "other reviews of the same product within an hour",
        "reviews",
    ),
    (
        "rating_sentiment_gap",
        "stars minus the rating the text's sentiment suggests",
        "stars",
    ),
    ("link_count", "links in the text", "links"),
    ("promo_terms", "promotional terms in the text", "terms"),
    (
        "reviewer_reviews",
        "other reviews by the same reviewer",
        "reviews",
    ),
    (
        "reviewer_account_age_hours",
        "hours since the reviewer signed up",
        "h",
    ),
    ("rating", "star rating", "stars"),
];

/// Cosine at or above which two reviews count as near-duplicates.
pub const DUPLICATE_COSINE: f32 = 0.9;
/// Burst window.
pub const BURST_SECS: i64 = 3600;

/// A review with its embedding, as the models see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewDoc {
    pub review_id: String,
    pub customer_id: String,
    pub sku: String,
    pub rating: i32,
    pub ts: i64,
    pub text: String,
}

/// Review text as embedded: title and body.
pub fn review_text(title: &str, text: &str) -> String {
    if title.is_empty() {
        text.to_string()
    } else {
        format!("{title}. {text}")
    }
}

/// Reviews with embeddings that a new review is compared with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Corpus {
    pub docs: Vec<ReviewDoc>,
    #[serde(skip)]
    pub embeddings: Vec<Vec<f32>>,
}

/// The measured signals of one review (before encoding).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewSignals {
    pub max_similarity: f32,
    pub most_similar: Option<String>,
    pub near_duplicates: usize,
    pub burst: usize,
    pub sentiment_rating: f32,
    pub links: usize,
    pub promo: usize,
    pub reviewer_reviews: usize,
    pub account_age_hours: Option<f64>,
    pub rating: i32,
}

impl ReviewSignals {
    pub fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Num(self.max_similarity as f64),
            Cell::Num(self.near_duplicates as f64),
            Cell::Num(self.burst as f64),
            Cell::Num(self.rating as f64 - self.sentiment_rating as f64),
            Cell::Num(self.links as f64),
            Cell::Num(self.promo as f64),
            Cell::Num(self.reviewer_reviews as f64),
            self.account_age_hours.map_or(Cell::Missing, Cell::Num),
            Cell::Num(self.rating as f64),
        ]
    }
}

/// Linear map from embedding to the star rating a genuine review with that text would give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    pub weights: Vec<f32>,
    pub bias: f32,
}

impl Sentiment {
    pub fn predict(&self, e: &[f32]) -> f32 {
        (dot(&self.weights, e) + self.bias).clamp(1.0, 5.0)
    }
}

/// Computes the signals of `doc` (embedding `e`) against `corpus`, skipping the doc itself
/// (same review id). `extra` are further recent reviews (with embeddings) not in the corpus.
pub fn signals(
    doc: &ReviewDoc,
    e: &[f32],
    corpus: &Corpus,
    extra: &[(ReviewDoc, Vec<f32>)],
    sentiment: &Sentiment,
    account_age_hours: Option<f64>,
) -> ReviewSignals {
    let mut s = ReviewSignals {
        max_similarity: 0.0,
        most_similar: None,
        near_duplicates: 0,
        burst: 0,
        sentiment_rating: sentiment.predict(e),
        links: link_count(&doc.text),
        promo: promo_terms(&doc.text),
        reviewer_reviews: 0,
        account_age_hours,
        rating: doc.rating,
    };
    let mut seen = std::collections::HashSet::new();
    let all = corpus
        .docs
        .iter()
        .zip(corpus.embeddings.iter().map(Vec::as_slice))
        .chain(extra.iter().map(|(d, e)| (d, e.as_slice())));
    for (other, oe) in all {
        if (!doc.review_id.is_empty() && other.review_id == doc.review_id)
            || !seen.insert(other.review_id.as_str())
        {
            continue;
        }
        let c = dot(e, oe);
        if c > s.max_similarity {
            s.max_similarity = c;
            s.most_similar = Some(other.review_id.clone());
        }
        if c >= DUPLICATE_COSINE {
            s.near_duplicates += 1;
        }
        if other.sku == doc.sku && (other.ts - doc.ts).abs() <= BURST_SECS {
            s.burst += 1;
        }
        if !doc.customer_id.is_empty() && other.customer_id == doc.customer_id {
            s.reviewer_reviews += 1;
        }
    }
    s
}

/// The saved review model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewModel {
    pub columns: Vec<String>,
    pub sentiment: Sentiment,
    pub classifier: Option<TabularModel>,
    pub anomaly_encoder: Encoder,
    pub anomaly: IsolationForest,
    pub thresholds: Thresholds,
    pub corpus: Corpus,
    /// Calibration of the anomaly percentile when the anomaly model is the scorer.
    #[serde(default)]
    pub anomaly_platt: Option<augur_model::calibrate::Platt>,
    /// Training distribution of the review features, saved as its own file
    /// (`feature_reference.json`) for the drift statistics; None in older artefacts.
    #[serde(skip)]
    pub reference: Option<augur_model::monitor::FeatureReference>,
}

/// The score of one review.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewScore {
    pub probability: f64,
    pub decision: Decision,
    pub factors: Vec<Factor>,
    pub rules: Vec<Factor>,
}

fn rule(name: &str, value: String, description: String, unit: &str) -> Factor {
    Factor {
        name: format!("rule:{name}"),
        contribution: 0.0,
        value,
        description,
        unit: unit.into(),
    }
}

/// The review rules that fired and the decision they force at least.
pub fn review_rules(s: &ReviewSignals) -> (Vec<Factor>, Decision) {
    let mut out = Vec::new();
    let mut floor = Decision::Approve;
    if s.max_similarity >= DUPLICATE_COSINE {
        floor = floor.max(Decision::Review);
        out.push(rule(
            "near_duplicate",
            format!(
                "{} {:.3}",
                s.most_similar.as_deref().unwrap_or(""),
                s.max_similarity
            ),
            format!(
                "near-duplicate of review {} (cosine {:.2}); {} near-duplicates in all (forces review)",
                s.most_similar.as_deref().unwrap_or("?"),
                s.max_similarity,
                s.near_duplicates
            ),
            "cosine",
        ));
    }
    if s.burst >= 4 {
        floor = floor.max(Decision::Review);
        out.push(rule(
            "review_burst",
            s.burst.to_string(),
            format!(
                "{} other reviews of this product within an hour (forces review)",
                s.burst
            ),
            "reviews",
        ));
    }
    if s.links > 0 {
        floor = floor.max(Decision::Review);
        out.push(rule(
            "promotional_link",
            s.links.to_string(),
            format!(
                "{} link(s) and {} promotional term(s) in the text (forces review)",
                s.links, s.promo
            ),
            "links",
        ));
    }
    let gap = s.rating as f32 - s.sentiment_rating;
    if gap.abs() >= 2.5 {
        out.push(rule(
            "rating_mismatch",
            format!("{gap:+.1}"),
            format!(
                "{} stars but the text reads like {:.1} stars",
                s.rating, s.sentiment_rating
            ),
            "stars",
        ));
    }
    (out, floor)
}

impl ReviewModel {
    pub fn score(&self, s: &ReviewSignals) -> ReviewScore {
        let cells = s.cells();
        let mut factors = Vec::new();
        let probability = match &self.classifier {
            Some(m) => {
                for c in m.contributions(&cells) {
                    let (name, d, u) = REVIEW_FEATURES[c.column];
                    factors.push(Factor {
                        name: name.into(),
                        contribution: c.value,
                        value: match &cells[c.column] {
                            Cell::Num(v) => format!("{v:.3}"),
                            _ => "missing".into(),
                        },
                        description: d.into(),
                        unit: u.into(),
                    });
                }
                m.predict(&cells)
            }
            None => {
                let x = self.anomaly_encoder.encode(&cells);
                let pct = self.anomaly.percentile(&x);
                // The anomaly model's reasons: the features furthest from the training reviews.
                for (c, (name, d, u)) in REVIEW_FEATURES.iter().enumerate() {
                    if let Some(j) = self.anomaly_encoder.owner.iter().position(|&o| o == c) {
                        factors.push(Factor {
                            name: format!("anomaly:{name}"),
                            contribution: pct * (x[j].abs() as f64).min(8.0) / 8.0,
                            value: match &cells[c] {
                                Cell::Num(v) => format!("{v:.3}"),
                                _ => "missing".into(),
                            },
                            description: format!(
                                "{d} ({:.1} standard deviations from training reviews)",
                                x[j]
                            ),
                            unit: (*u).into(),
                        });
                    }
                }
                self.anomaly_platt.map_or(pct, |p| p.apply(pct))
            }
        };
        factors.sort_by(|a, b| b.contribution.abs().total_cmp(&a.contribution.abs()));
        factors.truncate(5);
        let (rules, floor) = review_rules(s);
        ReviewScore {
            probability,
            decision: self.thresholds.decide(probability).max(floor),
            factors,
            rules,
        }
    }
}

/// Column names of the review features.
pub fn review_columns() -> Vec<String> {
    REVIEW_FEATURES
        .iter()
        .map(|(n, _, _)| n.to_string())
        .collect()
}
