//! The real CDNOW purchase log (69,659 orders of 23,570 customers) loaded through gRPC as order
//! events; frequency and monetary value as of 1997-09-30 checked, point in time, against values
//! computed independently here from the raw file.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use augur_proto::featurestore as pb;
use augur_testkit::datasets;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdnow_frequency_and_monetary_as_of_cutoff() {
    let Some(path) = datasets::require("cdnow/CDNOW_master.txt") else {
        return;
    };
    let rows = datasets::cdnow(&path).expect("parse CDNOW");
    assert_eq!(rows.len(), 69_659);
    let events = datasets::cdnow_orders(&rows);

    let backend = Backend::sqlite();
    let mut config = backend.config();
    config.sqlite_synchronous = "normal".into();
    let mut fs = start(&config).await;
    let c = &mut fs.client;
    let mut accepted = 0;
    for chunk in events.chunks(5_000) {
        let r = c
            .ingest(pb::IngestRequest {
                events: chunk.to_vec(),
            })
            .await
            .expect("ingest")
            .into_inner();
        assert!(r.rejected.is_empty(), "{:?}", r.rejected.first());
        accepted += r.accepted;
    }
    assert_eq!(accepted, 69_659);

    // Independent computation from the raw rows: orders and dollars up to and including
    // 1997-09-30, and in the 90 days before it.
    let cutoff = chrono::NaiveDate::from_ymd_opt(1997, 9, 30).expect("date");
    let as_of = cutoff
        .and_hms_opt(23, 59, 59)
        .expect("time")
        .and_utc()
        .timestamp();
    let window_start = cutoff - chrono::Duration::days(90);
    let mut expected: HashMap<&str, (i64, f64, i64)> = HashMap::new();
    for r in &rows {
        if r.date <= cutoff {
            let e = expected.entry(r.customer_id.as_str()).or_default();
            e.0 += 1;
            e.1 += r.dollars;
            // Orders are at noon; the 90-day window ends at 23:59:59 on the cutoff day.
            if r.date > window_start {
                e.2 += 1;
            }
        }
    }
    // A deterministic spread of customers, including heavy buyers.
    let mut ids: Vec<&str> = expected.keys().copied().collect();
    ids.sort_unstable();
    let mut sample: Vec<&str> = ids.iter().step_by(97).copied().collect();
    let mut heavy = ids.clone();
    heavy.sort_by_key(|id| std::cmp::Reverse(expected[id].0));
    sample.extend(heavy.iter().take(10));
    // A customer whose first purchase is after the cutoff is unknown at the cutoff.
    let late: Vec<&str> = rows
        .iter()
        .map(|r| r.customer_id.as_str())
        .filter(|id| !expected.contains_key(id))
        .take(1)
        .collect();

    let mut req_rows: Vec<pb::EntityAt> = sample
        .iter()
        .map(|id| pb::EntityAt {
            entity_id: id.to_string(),
            as_of: ts(as_of),
        })
        .collect();
    req_rows.extend(late.iter().map(|id| pb::EntityAt {
        entity_id: id.to_string(),
        as_of: ts(as_of),
    }));
    let resp = c
        .get_historical_features(pb::GetHistoricalFeaturesRequest {
            view: "customer".into(),
            rows: req_rows,
            features: vec![
                "frequency_lifetime".into(),
                "monetary_lifetime".into(),
                "frequency_90d".into(),
            ],
        })
        .await
        .expect("historical")
        .into_inner();
    let names = &resp.feature_names;
    for (row, id) in resp.rows.iter().zip(&sample) {
        let (n, dollars, n90) = expected[id];
        assert!(row.found, "{id}");
        assert_eq!(
            f64_of(names, row, "frequency_lifetime"),
            n as f64,
            "frequency of {id}"
        );
        assert!(
            (f64_of(names, row, "monetary_lifetime") - dollars).abs() < 1e-6,
            "monetary of {id}"
        );
        assert_eq!(
            f64_of(names, row, "frequency_90d"),
            n90 as f64,
            "90-day frequency of {id}"
        );
    }
    if !late.is_empty() {
        let last = resp.rows.last().expect("row");
        assert!(
            !last.found,
            "customer {} first bought after the cutoff",
            late[0]
        );
    }
    eprintln!(
        "checked {} customers against the raw CDNOW file",
        sample.len()
    );
    fs.handle.shutdown().await.expect("shutdown");
}
