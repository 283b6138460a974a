//! Two risk replicas on one `data_dir`: an order model that replica A trained and published is
//! picked up by B's reload watcher and served the way A serves it (drift reference set); A does
//! not reload its own version, and B's review watcher finds nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use augur_model::ModelMeta;
use augur_model::reload::Polled;
use augur_risk::app::{App, ORDER_MODEL, TrainOptions, default_order_columns, fit_table};
use augur_risk::fs::FeatureStore;
use augur_risk::tabular::{Cell, FitOptions, Learner};

fn replica(dir: &std::path::Path) -> Arc<App> {
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    Arc::new(App::empty(
        dir,
        FeatureStore::new(augur_runtime::client::intercepted(channel)),
    ))
}

#[tokio::test]
async fn an_order_model_published_by_one_replica_is_served_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (replica(dir.path()), replica(dir.path()));
    let (mut a_orders, _) = a.reload_watchers();
    let (mut b_orders, mut b_reviews) = b.reload_watchers();
    assert_eq!(b_orders.poll().await, Polled::UpToDate);
    assert!(b.orders.get().is_none());

    let columns = default_order_columns();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for i in 0..200 {
        let fraud = i % 20 == 0;
        let mut r: Vec<Cell> = vec![Cell::Num(0.0); columns.len()];
        r[0] = Cell::Num(if fraud {
            6.5
        } else {
            3.5 + (i % 7) as f64 * 0.1
        });
        r[7] = Cell::Num(if fraud { 4.0 } else { 1.0 });
        r[10] = Cell::Cat("card".into());
        rows.push(r);
        labels.push(Some(fraud));
    }
    let o = TrainOptions {
        fit: FitOptions {
            learners: vec![Learner::Linear],
            epochs: 20,
            ..Default::default()
        },
        ..Default::default()
    };
    let fit = fit_table(&columns, &rows, &labels, &o).unwrap();
    let reference = fit.model.reference.clone().unwrap();
    let meta = a
        .publish_order(fit.model, ModelMeta::new(ORDER_MODEL), false)
        .unwrap();

    // A serves what it trained and does not load it again.
    assert_eq!(a_orders.poll().await, Polled::UpToDate);
    assert_eq!(
        b_orders.poll().await,
        Polled::Reloaded(meta.version.clone())
    );
    let served = b.orders.get().unwrap();
    assert_eq!(served.meta.version, meta.version);
    assert_eq!(served.model.columns, columns);
    // Served through serve_order, as after Train: the drift monitor has the training reference.
    assert_eq!(b.order_monitor.reference_names(), Some(reference.names));
    assert_eq!(b_orders.poll().await, Polled::UpToDate);
    assert_eq!(b_reviews.poll().await, Polled::UpToDate);
    assert!(b.reviews.get().is_none());
}
