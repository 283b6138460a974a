//! End-to-end over real gRPC on 127.0.0.1:0, on SQLite and on PostgreSQL: ingest with
//! duplicates and a rejected batch member, online features, point-in-time historical features
//! (with a case that would leak if the as-of logic were wrong), series, scans, profiles,
//! restart durability and erasure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use augur_proto::featurestore as pb;
use common::*;
use tokio_stream::StreamExt;
use tonic::Code;

async fn scenario(backend: Backend) {
    let config = backend.config();
    let mut fs = start(&config).await;
    let c = &mut fs.client;

    // --- Ingest: catalogue, a customer, orders, interactions, a review; one bad event; one duplicate.
    let batch = vec![
        product("A", &["Books", "Fiction"], 10.0, 5, T0),
        product("B", &["Toys"], 4.0, 0, T0),
        customer("c1", "DE", T0),
        order("o1", "c1", T0 + 100 * DAY, &[("A", 2, 10.0)]),
        order("o2", "c1", T0 + 110 * DAY, &[("A", 1, 10.0), ("B", 3, 4.0)]),
        order("bad", "c1", T0 + 111 * DAY, &[("A", -2, 10.0)]),
        order("o1", "c1", T0 + 100 * DAY, &[("A", 2, 10.0)]),
        interaction(
            "i1",
            "c1",
            "A",
            pb::InteractionKind::View,
            T0 + 100 * DAY,
            "s1",
        ),
        interaction(
            "i2",
            "c1",
            "A",
            pb::InteractionKind::AddToCart,
            T0 + 100 * DAY,
            "s1",
        ),
        review("r1", "c1", "A", 2, T0 + 105 * DAY),
    ];
    let resp = c
        .ingest(pb::IngestRequest { events: batch })
        .await
        .expect("ingest")
        .into_inner();
    assert_eq!(resp.accepted, 8, "{resp:?}");
    assert_eq!(resp.duplicates, 1);
    assert_eq!(resp.rejected.len(), 1);
    let rej = &resp.rejected[0];
    assert_eq!(rej.index, 5);
    assert_eq!(rej.event_id, "bad");
    assert_eq!(rej.field, "events[5].order.lines[0].quantity");
    assert!(rej.reason.contains("negative quantity"), "{}", rej.reason);

    // The same batch again changes nothing.
    let again = c
        .ingest(pb::IngestRequest {
            events: vec![order("o1", "c1", T0 + 100 * DAY, &[("A", 2, 10.0)])],
        })
        .await
        .expect("ingest")
        .into_inner();
    assert_eq!((again.accepted, again.duplicates), (0, 1));

    // A status update of an order is a new event but not a new order.
    let mut refund = order("o2", "c1", T0 + 120 * DAY, &[("A", 1, 10.0), ("B", 3, 4.0)]);
    if let Some(pb::event::Payload::Order(o)) = &mut refund.payload {
        o.status = pb::OrderStatus::Refunded as i32;
    }
    let r = c
        .ingest(pb::IngestRequest {
            events: vec![refund],
        })
        .await
        .expect("ingest")
        .into_inner();
    assert_eq!(r.accepted, 1);

    // --- Online features.
    let online = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "customer".into(),
            entity_ids: vec!["c1".into(), "nobody".into()],
            features: vec![],
        })
        .await
        .expect("online")
        .into_inner();
    let names = &online.feature_names;
    let row = &online.rows[0];
    assert!(row.found);
    assert_eq!(f64_of(names, row, "frequency_lifetime"), 2.0);
    assert_eq!(f64_of(names, row, "monetary_lifetime"), 20.0 + 22.0);
    assert_eq!(f64_of(names, row, "units_lifetime"), 6.0);
    assert_eq!(f64_of(names, row, "interpurchase_mean_days"), 10.0);
    assert_eq!(f64_of(names, row, "distinct_categories"), 2.0);
    assert_eq!(f64_of(names, row, "refund_count"), 1.0);
    assert_eq!(f64_of(names, row, "review_count"), 1.0);
    assert_eq!(f64_of(names, row, "negative_review_share"), 1.0);
    assert_eq!(
        value_of(names, row, "interpurchase_std_days"),
        &pb::feature_value::Value::Missing(pb::Missing::NoData as i32),
        "fewer than three orders: missing, not 0"
    );
    assert_eq!(
        value_of(names, row, "country"),
        &pb::feature_value::Value::StringValue("DE".into())
    );
    let unknown = &online.rows[1];
    assert!(!unknown.found);
    assert!(unknown.values.iter().all(|v| v.value
        == Some(pb::feature_value::Value::Missing(
            pb::Missing::UnknownEntity as i32
        ))));

    // Attributes by name; a feature subset keeps the requested order.
    let subset = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "customer".into(),
            entity_ids: vec!["c1".into()],
            features: vec!["attr_tier".into(), "frequency_lifetime".into()],
        })
        .await
        .expect("subset")
        .into_inner();
    assert_eq!(
        subset.feature_names,
        vec!["attr_tier", "frequency_lifetime"]
    );
    assert_eq!(
        subset.rows[0].values[0].value,
        Some(pb::feature_value::Value::StringValue("gold".into()))
    );

    let product = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "product".into(),
            entity_ids: vec!["A".into(), "B".into()],
            features: vec![
                "units_lifetime".into(),
                "stock".into(),
                "category".into(),
                "mean_rating".into(),
            ],
        })
        .await
        .expect("product")
        .into_inner();
    assert_eq!(
        product.rows[0].values[0].value,
        Some(pb::feature_value::Value::Int64Value(3))
    );
    assert_eq!(
        product.rows[0].values[2].value,
        Some(pb::feature_value::Value::StringValue(
            "Books > Fiction".into()
        ))
    );
    assert_eq!(
        product.rows[0].values[3].value,
        Some(pb::feature_value::Value::DoubleValue(2.0))
    );
    assert_eq!(
        product.rows[1].values[1].value,
        Some(pb::feature_value::Value::Int64Value(0))
    );

    // Bad requests name the field.
    let err = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "nope".into(),
            entity_ids: vec!["c1".into()],
            features: vec![],
        })
        .await
        .expect_err("unknown view");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("view:"), "{}", err.message());
    let err = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "customer".into(),
            entity_ids: vec!["c1".into()],
            features: vec!["recency_days".into(), "favourite_colour".into()],
        })
        .await
        .expect_err("unknown feature");
    assert!(
        err.message().starts_with("features[1]:"),
        "{}",
        err.message()
    );

    // --- Historical: as of day 105 only o1 exists. o2 (day 110) and the refund (day 120) must
    // not leak into the row, though they were ingested before this read.
    let hist = c
        .get_historical_features(pb::GetHistoricalFeaturesRequest {
            view: "customer".into(),
            rows: vec![
                pb::EntityAt {
                    entity_id: "c1".into(),
                    as_of: ts(T0 + 105 * DAY),
                },
                pb::EntityAt {
                    entity_id: "c1".into(),
                    as_of: ts(T0 + 115 * DAY),
                },
                pb::EntityAt {
                    entity_id: "c1".into(),
                    as_of: ts(T0 - DAY),
                },
            ],
            features: vec![
                "frequency_lifetime".into(),
                "monetary_lifetime".into(),
                "recency_days".into(),
                "refund_count".into(),
                "review_count".into(),
            ],
        })
        .await
        .expect("historical")
        .into_inner();
    let n = &hist.feature_names;
    let at105 = &hist.rows[0];
    assert!(at105.found);
    assert_eq!(f64_of(n, at105, "frequency_lifetime"), 1.0);
    assert_eq!(f64_of(n, at105, "monetary_lifetime"), 20.0);
    assert_eq!(f64_of(n, at105, "recency_days"), 5.0);
    assert_eq!(f64_of(n, at105, "review_count"), 1.0);
    let at115 = &hist.rows[1];
    assert_eq!(f64_of(n, at115, "frequency_lifetime"), 2.0);
    assert_eq!(
        f64_of(n, at115, "refund_count"),
        0.0,
        "the refund happens on day 120"
    );
    assert!(
        !hist.rows[2].found,
        "nothing is known before the first event"
    );

    let hist_p = c
        .get_historical_features(pb::GetHistoricalFeaturesRequest {
            view: "product".into(),
            rows: vec![pb::EntityAt {
                entity_id: "A".into(),
                as_of: ts(T0 + 105 * DAY),
            }],
            features: vec![
                "units_lifetime".into(),
                "review_count".into(),
                "price".into(),
            ],
        })
        .await
        .expect("historical product")
        .into_inner();
    assert_eq!(
        hist_p.rows[0].values[0].value,
        Some(pb::feature_value::Value::Int64Value(2))
    );
    assert_eq!(
        hist_p.rows[0].values[1].value,
        Some(pb::feature_value::Value::Int64Value(1))
    );

    // --- Series: daily units of A, zero-filled between the two sales.
    let series = c
        .get_series(pb::GetSeriesRequest {
            skus: vec!["A".into()],
            ..Default::default()
        })
        .await
        .expect("series")
        .into_inner();
    let s = &series.series[0];
    assert_eq!(s.points.len(), 11);
    assert_eq!(s.points[0].units, 2.0);
    assert_eq!(s.points[5].units, 0.0);
    assert_eq!(s.points[10].units, 1.0);
    assert_eq!(
        s.points[5].price,
        Some(10.0),
        "list price when nothing sold"
    );
    assert_eq!(s.stock, Some(5));
    let err = c
        .get_series(pb::GetSeriesRequest {
            skus: vec!["ZZZ".into()],
            ..Default::default()
        })
        .await
        .expect_err("unknown sku");
    assert_eq!(err.code(), Code::NotFound);

    // --- Interaction log with order lines, in time order.
    let mut stream = c
        .scan_interactions(pb::ScanInteractionsRequest {
            include_order_lines: true,
            batch_size: 2,
            ..Default::default()
        })
        .await
        .expect("scan")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(msg) = stream.next().await {
        for i in msg.expect("batch").interactions {
            seen.push((i.ts.map(|t| t.seconds).unwrap_or_default(), i.event_id));
        }
    }
    assert_eq!(seen.len(), 2 + 3, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "time order: {seen:?}"
    );

    // --- Profile.
    let profile = c
        .get_customer_profile(pb::GetCustomerProfileRequest {
            customer_id: "c1".into(),
        })
        .await
        .expect("profile")
        .into_inner()
        .profile
        .expect("profile");
    assert_eq!(profile.orders, 2);
    // 3 units each: ties are broken by name.
    assert_eq!(profile.favourite_categories[0].category, "Books > Fiction");
    assert_eq!(profile.favourite_categories[0].share, 0.5);
    assert_eq!(profile.country, "DE");

    // --- Segments of many customers in one call: each the segment of the customer's profile,
    // in request order, an unknown id answered as not found.
    let mut ids = c
        .list_entities(pb::ListEntitiesRequest {
            entity: "customer".into(),
            page: None,
        })
        .await
        .expect("customers")
        .into_inner()
        .entity_ids;
    assert!(!ids.is_empty(), "{ids:?}");
    ids.reverse();
    ids.insert(1.min(ids.len()), "nobody".into());
    ids.push(ids[0].clone());
    let segments = c
        .get_customer_segments(pb::GetCustomerSegmentsRequest {
            customer_ids: ids.clone(),
        })
        .await
        .expect("segments")
        .into_inner()
        .segments;
    assert_eq!(segments.len(), ids.len());
    for (id, s) in ids.iter().zip(&segments) {
        assert_eq!(&s.customer_id, id);
        if id == "nobody" {
            assert!(!s.found);
            assert_eq!(s.segment(), pb::Segment::Unspecified);
            continue;
        }
        let p = c
            .get_customer_profile(pb::GetCustomerProfileRequest {
                customer_id: id.clone(),
            })
            .await
            .expect("profile")
            .into_inner()
            .profile
            .expect("profile");
        assert!(s.found, "{id}");
        assert_eq!(s.segment, p.segment, "{id}");
    }
    assert!(
        segments
            .iter()
            .any(|s| s.segment() != pb::Segment::NoPurchase && s.found),
        "some customer with orders: {segments:?}"
    );

    // --- Restart: everything acknowledged is still there.
    drop(fs.client);
    fs.handle.shutdown().await.expect("shutdown");
    let mut fs = start(&config).await;
    let c = &mut fs.client;
    let online2 = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "customer".into(),
            entity_ids: vec!["c1".into()],
            features: vec![],
        })
        .await
        .expect("online after restart")
        .into_inner();
    // Everything but the clock-dependent "days" features is identical after the restart.
    for (i, name) in online.feature_names.iter().enumerate() {
        if !name.contains("days") {
            assert_eq!(
                online2.rows[0].values[i], online.rows[0].values[i],
                "{name} changed across restart"
            );
        }
    }
    assert_eq!(
        f64_of(
            &online2.feature_names,
            &online2.rows[0],
            "frequency_lifetime"
        ),
        2.0
    );
    assert_eq!(
        f64_of(
            &online2.feature_names,
            &online2.rows[0],
            "monetary_lifetime"
        ),
        42.0
    );
    let dup = c
        .ingest(pb::IngestRequest {
            events: vec![order("o2", "c1", T0 + 110 * DAY, &[("A", 1, 10.0)])],
        })
        .await
        .expect("ingest")
        .into_inner();
    assert_eq!(dup.duplicates, 1, "dedup survives restart");

    // --- Erase.
    let erased = c
        .delete_customer(pb::DeleteCustomerRequest {
            customer_id: "c1".into(),
        })
        .await
        .expect("erase")
        .into_inner();
    assert_eq!(erased.events_erased, 7);
    let after = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "customer".into(),
            entity_ids: vec!["c1".into()],
            features: vec![],
        })
        .await
        .expect("online")
        .into_inner();
    assert!(!after.rows[0].found);
    let err = c
        .get_customer_profile(pb::GetCustomerProfileRequest {
            customer_id: "c1".into(),
        })
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .delete_customer(pb::DeleteCustomerRequest {
            customer_id: "c1".into(),
        })
        .await
        .expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
    let hist = c
        .get_historical_features(pb::GetHistoricalFeaturesRequest {
            view: "customer".into(),
            rows: vec![pb::EntityAt {
                entity_id: "c1".into(),
                as_of: ts(T0 + 200 * DAY),
            }],
            features: vec![],
        })
        .await
        .expect("historical")
        .into_inner();
    assert!(!hist.rows[0].found, "erased from history too");
    let mut events = c
        .scan_events(pb::ScanEventsRequest {
            kinds: vec![],
            ..Default::default()
        })
        .await
        .expect("scan")
        .into_inner();
    while let Some(batch) = events.next().await {
        for e in batch.expect("batch").events {
            let text = format!("{:?}", e.event);
            assert!(!text.contains("\"c1\""), "customer id left in {text}");
            assert!(!text.contains("fine product"), "review text left in {text}");
        }
    }
    // Product-level facts stay.
    let product2 = c
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "product".into(),
            entity_ids: vec!["A".into()],
            features: vec!["units_lifetime".into(), "review_count".into()],
        })
        .await
        .expect("product")
        .into_inner();
    assert_eq!(
        product2.rows[0].values[0].value,
        Some(pb::feature_value::Value::Int64Value(3))
    );
    assert_eq!(
        product2.rows[0].values[1].value,
        Some(pb::feature_value::Value::Int64Value(1))
    );

    // ...also after another restart (the log replays to the same state).
    drop(fs.client);
    fs.handle.shutdown().await.expect("shutdown");
    let mut fs = start(&config).await;
    let product3 = fs
        .client
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "product".into(),
            entity_ids: vec!["A".into()],
            features: vec!["units_lifetime".into(), "review_count".into()],
        })
        .await
        .expect("product")
        .into_inner();
    assert_eq!(product3.rows[0].values, product2.rows[0].values);
    let gone = fs
        .client
        .get_online_features(pb::GetOnlineFeaturesRequest {
            view: "customer".into(),
            entity_ids: vec!["c1".into()],
            features: vec![],
        })
        .await
        .expect("online")
        .into_inner();
    assert!(!gone.rows[0].found);
    drop(fs.client);
    fs.handle.shutdown().await.expect("shutdown");
    backend.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_sqlite() {
    scenario(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_postgres() {
    if let Some(b) = Backend::postgres().await {
        scenario(b).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stream_sums_batches_and_indexes_the_whole_stream() {
    let backend = Backend::sqlite();
    let mut fs = start(&backend.config()).await;
    let batches = vec![
        pb::IngestRequest {
            events: vec![customer("a", "FR", T0), customer("b", "FR", T0)],
        },
        pb::IngestRequest {
            events: vec![customer("a", "FR", T0), pb::Event { payload: None }],
        },
    ];
    let resp = fs
        .client
        .ingest_stream(tokio_stream::iter(batches))
        .await
        .expect("stream")
        .into_inner();
    assert_eq!((resp.accepted, resp.duplicates), (2, 1));
    assert_eq!(resp.rejected[0].index, 3);
    assert_eq!(resp.rejected[0].field, "events[3].payload");
    assert!(resp.rejected[0].reason.contains("unknown kind"));

    // Over the batch limit: the whole call is refused, naming the field.
    let too_many = (0..10_001)
        .map(|i| customer(&format!("x{i}"), "FR", T0))
        .collect();
    let err = fs
        .client
        .ingest(pb::IngestRequest { events: too_many })
        .await
        .expect_err("too big");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("events:"), "{}", err.message());
    fs.handle.shutdown().await.expect("shutdown");
}
