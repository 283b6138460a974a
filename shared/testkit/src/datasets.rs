//! Locating and loading the public datasets.

use std::path::{Path, PathBuf};

use augur_proto::featurestore as pb;

/// The dataset folder: `AUGUR_DATASETS`, else `../shared/datasets` relative to the workspace root.
pub fn dir() -> PathBuf {
    if let Ok(d) = std::env::var("AUGUR_DATASETS")
        && !d.trim().is_empty()
    {
        return PathBuf::from(d);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
}

/// The path of a dataset file, or `None` after a loud message when it is missing. With
/// `AUGUR_REQUIRE_DATASETS=1` a missing dataset panics instead.
pub fn require(relative: &str) -> Option<PathBuf> {
    let path = dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "dataset {} not found (set AUGUR_DATASETS to the folder holding {relative})",
        path.display()
    );
    if crate::required("AUGUR_REQUIRE_DATASETS") {
        panic!("{msg}; AUGUR_REQUIRE_DATASETS=1");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

/// One purchase line of the CDNOW log.
#[derive(Debug, Clone, PartialEq)]
pub struct CdnowRow {
    pub customer_id: String,
    /// Days since the epoch of the purchase date.
    pub date: chrono::NaiveDate,
    pub cds: i64,
    pub dollars: f64,
}

/// Parses `CDNOW_master.txt` (header, whitespace-separated, CRLF).
pub fn cdnow(path: &Path) -> std::io::Result<Vec<CdnowRow>> {
    let text = std::fs::read_to_string(path)?;
    let bad = |line: usize, what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line {line}: {what}"),
        )
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 4 {
            return Err(bad(i + 1, "expected 4 columns"));
        }
        out.push(CdnowRow {
            customer_id: f[0].to_string(),
            date: chrono::NaiveDate::parse_from_str(f[1], "%Y%m%d")
                .map_err(|_| bad(i + 1, "bad date"))?,
            cds: f[2].parse().map_err(|_| bad(i + 1, "bad number_of_cds"))?,
            dollars: f[3].parse().map_err(|_| bad(i + 1, "bad dollar_value"))?,
        });
    }
    Ok(out)
}

/// CDNOW rows as order events: one order per row (id `cdnow-<row>`), at noon UTC of its date,
/// one line of SKU "CD" with the number of CDs, total = dollar value.
pub fn cdnow_orders(rows: &[CdnowRow]) -> Vec<pb::Event> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let ts = r
                .date
                .and_hms_opt(12, 0, 0)
                .map_or(0, |d| d.and_utc().timestamp());
            pb::Event {
                payload: Some(pb::event::Payload::Order(pb::Order {
                    order_id: format!("cdnow-{i}"),
                    customer_id: r.customer_id.clone(),
                    ts: Some(prost_types::Timestamp {
                        seconds: ts,
                        nanos: 0,
                    }),
                    lines: vec![pb::OrderLine {
                        sku: "CD".into(),
                        quantity: r.cds.max(1),
                        unit_price: if r.cds > 0 {
                            r.dollars / r.cds as f64
                        } else {
                            r.dollars
                        },
                        promotion: false,
                    }],
                    total: Some(r.dollars),
                    currency: "USD".into(),
                    ..Default::default()
                })),
            }
        })
        .collect()
}
