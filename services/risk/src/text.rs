//! Text features: hashed TF-IDF over word 1-2 grams and character 3-5 grams (the classic spam
//! baseline), and cheap signals of promotional content in reviews.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::linear::SparseRow;

/// FNV-1a, stable across runs and platforms.
fn fnv(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Hashed TF-IDF vectoriser (sublinear tf, smoothed idf, L2-normalised rows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TfIdf {
    pub bits: u32,
    /// Characters of a document used for character n-grams (long e-mails are cut).
    pub max_chars: usize,
    pub idf: Vec<f32>,
}

impl TfIdf {
    fn counts(&self, doc: &str) -> HashMap<u32, f32> {
        let mask = (1u64 << self.bits) - 1;
        let lower = doc.to_lowercase();
        let mut c: HashMap<u32, f32> = HashMap::new();
        let words: Vec<&str> = lower
            .split(|ch: char| !ch.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        for w in &words {
            *c.entry((fnv(w.as_bytes(), 1) & mask) as u32).or_default() += 1.0;
        }
        for p in words.windows(2) {
            let mut h = fnv(p[0].as_bytes(), 2);
            h = fnv(p[1].as_bytes(), h);
            *c.entry((h & mask) as u32).or_default() += 1.0;
        }
        let chars: Vec<char> = lower
            .chars()
            .take(self.max_chars)
            .map(|ch| if ch.is_whitespace() { ' ' } else { ch })
            .collect();
        let mut buf = String::new();
        for n in 3..=5 {
            for w in chars.windows(n) {
                buf.clear();
                buf.extend(w.iter());
                *c.entry((fnv(buf.as_bytes(), 3 + n as u64) & mask) as u32)
                    .or_default() += 1.0;
            }
        }
        c
    }

    /// Fits the idf on `docs`.
    pub fn fit(docs: &[&str], bits: u32, max_chars: usize) -> TfIdf {
        let mut t = TfIdf {
            bits,
            max_chars,
            idf: vec![0.0; 1 << bits],
        };
        let mut df = vec![0u32; 1 << bits];
        for d in docs {
            for k in t.counts(d).keys() {
                df[*k as usize] += 1;
            }
        }
        let n = docs.len() as f32;
        for (i, d) in df.iter().enumerate() {
            t.idf[i] = ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0;
        }
        t
    }

    pub fn dim(&self) -> usize {
        1 << self.bits
    }

    pub fn transform(&self, doc: &str) -> SparseRow {
        let mut row: SparseRow = self
            .counts(doc)
            .into_iter()
            .map(|(k, c)| (k, (1.0 + c.ln()) * self.idf[k as usize]))
            .collect();
        let norm = row
            .iter()
            .map(|(_, v)| v * v)
            .sum::<f32>()
            .sqrt()
            .max(1e-12);
        for (_, v) in &mut row {
            *v /= norm;
        }
        row.sort_unstable_by_key(|(k, _)| *k);
        row
    }
}

/// Links in a text (`http://`, `https://`, `www.`).
pub fn link_count(text: &str) -> usize {
    let l = text.to_lowercase();
    l.matches("http://").count() + l.matches("https://").count() + l.matches("www.").count()
}

const PROMO: &[&str] = &[
    "discount",
    "cheap",
    "deal",
    "deals",
    "coupon",
    "promo",
    "code",
    "free",
    "click",
    "visit",
    "offer",
    "buy now",
    "order now",
    "sale",
    "best price",
    "limited time",
    "subscribe",
    "earn",
];

/// Promotional terms in a text.
pub fn promo_terms(text: &str) -> usize {
    let l = text.to_lowercase();
    PROMO.iter().map(|p| l.matches(p).count()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tfidf_rows_are_unit_and_similar_texts_overlap() {
        let docs = [
            "cheap pills buy now",
            "meeting at noon tomorrow",
            "buy cheap pills now",
        ];
        let t = TfIdf::fit(&docs, 16, 1000);
        let a = t.transform(docs[0]);
        let n: f32 = a.iter().map(|(_, v)| v * v).sum();
        assert!((n - 1.0).abs() < 1e-4);
        let dot = |x: &SparseRow, y: &SparseRow| -> f32 {
            let m: HashMap<u32, f32> = y.iter().copied().collect();
            x.iter()
                .map(|(k, v)| v * m.get(k).copied().unwrap_or(0.0))
                .sum()
        };
        assert!(dot(&a, &t.transform(docs[2])) > dot(&a, &t.transform(docs[1])));
    }

    #[test]
    fn promotional_signals() {
        assert_eq!(
            link_count("see http://cheap-deals.example and www.x.com"),
            2
        );
        assert!(promo_terms("Best price! Click for a discount code") >= 3);
        assert_eq!(promo_terms("Lovely kettle, boils fast."), 0);
    }
}
