//! `ScanEventsRequest.device_fingerprint`: the orders placed from one device, through the online
//! state's per-device index, on SQLite and on PostgreSQL: by the raw fingerprint and by the
//! stored hash; the other filters still apply; the index is rebuilt from the log after a
//! restart; an erasure's stripped fingerprints are not found; any fingerprint ingestion
//! accepts can be looked up, a longer one is INVALID_ARGUMENT naming `device_fingerprint`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use augur_proto::featurestore as pb;
use common::*;

fn from_device(mut e: pb::Event, device: &str) -> pb::Event {
    if let Some(pb::event::Payload::Order(o)) = &mut e.payload {
        o.device_fingerprint = device.into();
    }
    e
}

fn by_device(device: &str) -> pb::ScanEventsRequest {
    pb::ScanEventsRequest {
        device_fingerprint: device.into(),
        ..Default::default()
    }
}

fn ids(orders: &[pb::Order]) -> Vec<&str> {
    orders.iter().map(|o| o.order_id.as_str()).collect()
}

async fn scenario(backend: Backend) {
    let mut fs = start(&backend.config()).await;
    let line = [("A", 1, 10.0)];
    let mut events = vec![
        customer("c1", "DE", T0),
        customer("c2", "FR", T0),
        customer("c3", "FR", T0),
    ];
    // c1's three orders from its own device ("dev_c1"), out of time order.
    for (id, t) in [("a3", 30), ("a1", 10), ("a2", 20)] {
        events.push(order(id, "c1", T0 + DAY + t, &line));
    }
    // One device shared by c2 and c3; a device whose name extends it; an order without one.
    events.push(from_device(
        order("s1", "c2", T0 + DAY + 15, &line),
        "shared",
    ));
    events.push(from_device(
        order("s2", "c3", T0 + DAY + 25, &line),
        "shared",
    ));
    events.push(from_device(
        order("x1", "c3", T0 + DAY + 26, &line),
        "shared2",
    ));
    events.push(from_device(order("n1", "c2", T0 + DAY + 27, &line), ""));
    // Fingerprints are opaque: one with a control character is stored, and found.
    events.push(from_device(
        order("t1", "c3", T0 + DAY + 28, &line),
        "dev\t1",
    ));
    // Other kinds never match.
    events.push(review("r1", "c1", "A", 5, T0 + DAY + 12));
    let r = fs
        .client
        .ingest(pb::IngestRequest { events })
        .await
        .expect("ingest")
        .into_inner();
    assert!(r.rejected.is_empty(), "{r:?}");

    for round in ["fresh", "after restart"] {
        let c = &mut fs.client;
        // By the raw fingerprint: that device's orders in event-time order, nothing else.
        let got = scan_orders(c, by_device("dev_c1")).await.expect("dev_c1");
        assert_eq!(ids(&got), ["a1", "a2", "a3"], "{round}");
        let got = scan_orders(c, by_device("shared")).await.expect("shared");
        assert_eq!(ids(&got), ["s1", "s2"], "{round}");
        // The stored form is the keyed hash, and it finds the same orders.
        let stored = got[0].device_fingerprint.clone();
        assert!(!stored.is_empty() && stored != "shared", "{stored}");
        let again = scan_orders(c, by_device(&stored)).await.expect("by hash");
        assert_eq!(ids(&again), ["s1", "s2"], "{round}");
        assert!(
            scan_orders(c, by_device("nope"))
                .await
                .expect("nope")
                .is_empty()
        );
        let got = scan_orders(c, by_device("dev\t1")).await.expect("tab");
        assert_eq!(ids(&got), ["t1"], "{round}");

        // The other filters combine with it.
        let range = |start: i64, end: i64| {
            Some(augur_proto::common::TimeRange {
                start: ts(start),
                end: ts(end),
            })
        };
        let mut r = by_device("dev_c1");
        r.range = range(T0 + DAY + 11, T0 + DAY + 30);
        assert_eq!(
            ids(&scan_orders(c, r).await.expect("range")),
            ["a2"],
            "{round}"
        );
        let mut r = by_device("shared");
        r.customer_id = "c3".into();
        assert_eq!(ids(&scan_orders(c, r).await.expect("customer")), ["s2"]);
        let mut r = by_device("shared");
        r.order_id = "s1".into();
        assert_eq!(ids(&scan_orders(c, r).await.expect("order")), ["s1"]);
        let mut r = by_device("dev_c1");
        r.order_id = "s1".into();
        assert!(
            scan_orders(c, r)
                .await
                .expect("other device's order")
                .is_empty()
        );
        let mut r = by_device("dev_c1");
        r.kinds = vec![pb::EventKind::Review as i32];
        assert!(scan_orders(c, r).await.expect("kinds").is_empty());
        let mut r = by_device("dev_c1");
        r.batch_size = 1;
        assert_eq!(scan_orders(c, r).await.expect("batches").len(), 3);

        if round == "fresh" {
            // The index lives in memory: a restart on the same data rebuilds it from the log.
            drop(fs.client);
            fs.handle.shutdown().await.expect("shutdown");
            fs = start(&backend.config()).await;
        }
    }

    // Longer than ingestion accepts: refused, naming the field.
    let c = &mut fs.client;
    let e = scan_orders(c, by_device(&"d".repeat(513)))
        .await
        .expect_err("bad value accepted");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("device_fingerprint"),
        "{}",
        e.message()
    );

    // An erasure strips the fingerprints from the customer's orders: they are not found by
    // device any more (the index still lists them; the stored events decide).
    c.delete_customer(pb::DeleteCustomerRequest {
        customer_id: "c2".into(),
    })
    .await
    .expect("erase");
    let got = scan_orders(c, by_device("shared"))
        .await
        .expect("after erasure");
    assert_eq!(ids(&got), ["s2"]);
    assert_eq!(
        scan_orders(c, by_device("dev_c1"))
            .await
            .expect("untouched")
            .len(),
        3
    );

    drop(fs.client);
    fs.handle.shutdown().await.expect("shutdown");
    backend.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_lookup_sqlite() {
    scenario(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_lookup_postgres() {
    if let Some(b) = Backend::postgres().await {
        scenario(b).await;
    }
}
