//! `ScanEventsRequest.order_id`: one order's events by key (the unique (kind, event_key)
//! index), on SQLite and on PostgreSQL; the other filters still apply; a bad id is
//! INVALID_ARGUMENT naming `order_id`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use augur_proto::featurestore as pb;
use common::*;

fn with_status(mut e: pb::Event, status: pb::OrderStatus, t: i64) -> pb::Event {
    if let Some(pb::event::Payload::Order(o)) = &mut e.payload {
        o.status = status as i32;
        o.ts = ts(t);
    }
    e
}

fn by_id(id: &str) -> pb::ScanEventsRequest {
    pb::ScanEventsRequest {
        order_id: id.into(),
        ..Default::default()
    }
}

async fn scenario(backend: Backend) {
    let mut fs = start(&backend.config()).await;
    let c = &mut fs.client;
    let line = [("A", 1, 10.0)];
    let mut events = vec![customer("c1", "DE", T0), customer("c2", "FR", T0)];
    // Neighbours whose keys share a prefix with "o1", and an id containing the separator.
    for (k, id) in ["o1", "o10", "o1/x", "o", "o1 "].iter().enumerate() {
        events.push(order(id, "c1", T0 + 10 * DAY + k as i64, &line));
    }
    events.push(order("o2", "c2", T0 + 11 * DAY, &line));
    // o1: paid, then charged back (status updates arrive after other orders).
    events.push(with_status(
        order("o1", "c1", 0, &line),
        pb::OrderStatus::ChargedBack,
        T0 + 40 * DAY,
    ));
    events.push(with_status(
        order("o1", "c1", 0, &line),
        pb::OrderStatus::Paid,
        T0 + 10 * DAY + 60,
    ));
    let r = c
        .ingest(pb::IngestRequest { events })
        .await
        .expect("ingest")
        .into_inner();
    assert!(r.rejected.is_empty(), "{r:?}");

    // All of o1's events, in event-time order, and nothing of its neighbours.
    let o1 = scan_orders(c, by_id("o1")).await.expect("o1");
    let statuses: Vec<i32> = o1.iter().map(|o| o.status).collect();
    assert_eq!(
        statuses,
        vec![
            pb::OrderStatus::Placed as i32,
            pb::OrderStatus::Paid as i32,
            pb::OrderStatus::ChargedBack as i32
        ],
        "{o1:?}"
    );
    assert!(o1.iter().all(|o| o.order_id == "o1"));
    assert_eq!(o1[0].ts, ts(T0 + 10 * DAY));
    for id in ["o10", "o1/x", "o", "o1 ", "o2"] {
        let got = scan_orders(c, by_id(id)).await.expect(id);
        assert_eq!(got.len(), 1, "{id}: {got:?}");
        assert_eq!(got[0].order_id, id);
    }
    assert!(
        scan_orders(c, by_id("nope"))
            .await
            .expect("unknown")
            .is_empty()
    );

    // Other filters combine with it.
    let range = |start: i64, end: i64| {
        Some(augur_proto::common::TimeRange {
            start: ts(start),
            end: ts(end),
        })
    };
    let mut r = by_id("o1");
    r.range = range(T0 + 20 * DAY, T0 + 50 * DAY);
    let late = scan_orders(c, r).await.expect("range");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].status, pb::OrderStatus::ChargedBack as i32);
    let mut r = by_id("o1");
    r.customer_id = "c2".into();
    assert!(scan_orders(c, r).await.expect("customer").is_empty());
    let mut r = by_id("o1");
    r.customer_id = "c1".into();
    assert_eq!(scan_orders(c, r).await.expect("customer").len(), 3);
    let mut r = by_id("o1");
    r.kinds = vec![pb::EventKind::Review as i32];
    assert!(scan_orders(c, r).await.expect("kinds").is_empty());
    let mut r = by_id("o1");
    r.batch_size = 1;
    assert_eq!(scan_orders(c, r).await.expect("batches").len(), 3);

    // Bad ids.
    for id in ["x".repeat(129), "o\n1".to_string()] {
        let e = scan_orders(c, by_id(&id))
            .await
            .expect_err("bad id accepted");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("order_id"), "{}", e.message());
    }

    // After an erasure the order's events are still found (anonymised), not by customer.
    c.delete_customer(pb::DeleteCustomerRequest {
        customer_id: "c1".into(),
    })
    .await
    .expect("erase");
    let o1 = scan_orders(c, by_id("o1")).await.expect("o1 after erasure");
    assert_eq!(o1.len(), 3);
    assert!(o1.iter().all(|o| o.customer_id.is_empty()), "{o1:?}");
    let mut r = by_id("o1");
    r.customer_id = "c1".into();
    assert!(scan_orders(c, r).await.expect("erased customer").is_empty());

    drop(fs.client);
    fs.handle.shutdown().await.expect("shutdown");
    backend.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_lookup_sqlite() {
    scenario(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_lookup_postgres() {
    if let Some(b) = Backend::postgres().await {
        scenario(b).await;
    }
}
