//! Churn benchmark on CDNOW (`make bench-churn`).
//!
//! Protocol (issue #4): the feature store (in process, temp SQLite) receives only the orders up to
//! and including 1997-09-30; the churn service trains through its gRPC `Train` with cutoff
//! 1997-09-30 and a 273-day horizon, its training labels coming from the past only (features as
//! of the example cutoffs, labels from the window after each, ending at 1997-09-30); then
//! `PredictChurn` as of 1997-09-30 over loopback gRPC for all 23,570 customers. Truth: no purchase
//! from 1997-10-01 to 1998-06-30 (read from the raw file, never given to the service). Baselines
//! from the crate's own code on the same split. Then PredictChurn latency for 1 and 1,000
//! customers with features fetched from the feature store.
//!
//! Env: `CHURN_EXAMPLE_CUTOFFS` (comma-separated YYYY-MM-DD, default 1997-06-30),
//! `CHURN_HP` (k=v,k=v hyper-parameters), `LAT_ITERS` (default 1000 single / 200 batch).

use std::collections::HashMap;
use std::time::Instant;

use augur_churn::btyd::{BgNbd, ParetoNbd};
use augur_churn::features::{self, Record};
use augur_churn::fs::ts;
use augur_feature_store::Config as FsConfig;
use augur_model::metrics;
use augur_proto::churn as cpb;
use augur_proto::churn::churn_client::ChurnClient;
use augur_proto::featurestore as fpb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_runtime::{Secret, ServerConfig};
use augur_testkit::datasets;
use chrono::NaiveDate;
use tonic::transport::Channel;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn end_of(d: NaiveDate) -> i64 {
    d.and_hms_opt(23, 59, 59)
        .map_or(0, |t| t.and_utc().timestamp())
}

fn date(s: &str) -> anyhow::Result<NaiveDate> {
    Ok(NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")?)
}

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// Logistic regression by Newton's method (the RFM baseline), with a small ridge.
#[allow(clippy::needless_range_loop)]
fn logistic(x: &[Vec<f64>], y: &[bool]) -> Vec<f64> {
    let d = x.first().map_or(0, |r| r.len()) + 1;
    let mut w = vec![0.0; d];
    for _ in 0..50 {
        let mut g = vec![0.0; d];
        let mut h = vec![vec![0.0; d]; d];
        for (r, &l) in x.iter().zip(y) {
            let xi: Vec<f64> = std::iter::once(1.0).chain(r.iter().copied()).collect();
            let z: f64 = xi.iter().zip(&w).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let t = f64::from(u8::from(l));
            for i in 0..d {
                g[i] += (p - t) * xi[i];
                for j in 0..d {
                    h[i][j] += p * (1.0 - p) * xi[i] * xi[j];
                }
            }
        }
        for (i, row) in h.iter_mut().enumerate() {
            row[i] += 1e-6;
        }
        // Solve h * step = g (Gauss-Jordan).
        let mut a: Vec<Vec<f64>> = h
            .iter()
            .zip(&g)
            .map(|(r, gi)| r.iter().copied().chain(std::iter::once(*gi)).collect())
            .collect();
        for c in 0..d {
            let piv = (c..d)
                .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
                .unwrap_or(c);
            a.swap(c, piv);
            let pv = a[c][c];
            if pv.abs() < 1e-12 {
                continue;
            }
            for k in c..=d {
                a[c][k] /= pv;
            }
            for i in 0..d {
                if i != c {
                    let f = a[i][c];
                    for k in c..=d {
                        a[i][k] -= f * a[c][k];
                    }
                }
            }
        }
        let mut done = true;
        for i in 0..d {
            w[i] -= a[i][d];
            if a[i][d].abs() > 1e-9 {
                done = false;
            }
        }
        if done {
            break;
        }
    }
    w
}

fn lr_predict(w: &[f64], r: &[f64]) -> f64 {
    let z = w[0] + r.iter().zip(&w[1..]).map(|(a, b)| a * b).sum::<f64>();
    1.0 / (1.0 + (-z).exp())
}

fn rfm_row(r: &Record) -> Vec<f64> {
    vec![
        r.get("recency_days").unwrap_or(0.0),
        r.get("frequency_lifetime").unwrap_or(0.0).ln_1p(),
        r.get("monetary_lifetime").unwrap_or(0.0).ln_1p(),
    ]
}

struct Row {
    name: String,
    auc: f64,
    pr: f64,
    brier: Option<f64>,
    purchases: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--demo") {
        return demo().await;
    }
    let Some(path) = datasets::require("cdnow/CDNOW_master.txt") else {
        return Ok(());
    };
    let rows = datasets::cdnow(&path)?;
    let cutoff_day = date("1997-09-30")?;
    let hold_end = date("1998-06-30")?;
    let cutoff = end_of(cutoff_day);
    let horizon_days = (hold_end - cutoff_day).num_days() as u32; // 273
    let visible: Vec<_> = rows
        .iter()
        .filter(|r| r.date <= cutoff_day)
        .cloned()
        .collect();
    let events = datasets::cdnow_orders(&visible);
    let mut holdout: HashMap<String, f64> = HashMap::new();
    let mut customers: Vec<String> = Vec::new();
    for r in &rows {
        let e = holdout.entry(r.customer_id.clone()).or_insert_with(|| {
            customers.push(r.customer_id.clone());
            0.0
        });
        if r.date > cutoff_day && r.date <= hold_end {
            *e += 1.0;
        }
    }
    println!(
        "CDNOW: {} rows, {} customers, {} orders visible (<= {cutoff_day}), horizon {horizon_days} days",
        rows.len(),
        customers.len(),
        visible.len()
    );

    // Feature store, in process, temp SQLite.
    let dir = tempfile::tempdir()?;
    let fs_config = FsConfig {
        server: ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            max_concurrent_requests: 4096,
            request_timeout_ms: 120_000,
            ..ServerConfig::default()
        },
        data_dir: dir.path().join("fs"),
        hash_key: Secret::new("benchmark-hash-key-000000"),
        sqlite_synchronous: "normal".into(),
        ..FsConfig::default()
    };
    let (fs_server, _app) = augur_feature_store::build(&fs_config).await?;
    let fs_handle = fs_server.spawn().await?;
    let mut fs = FeatureStoreClient::connect(fs_handle.url())
        .await?
        .max_decoding_message_size(256 << 20);
    let t = Instant::now();
    for chunk in events.chunks(5_000) {
        let r = fs
            .ingest(fpb::IngestRequest {
                events: chunk.to_vec(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(r.rejected.is_empty(), "rejected {:?}", r.rejected.first());
    }
    println!("ingested in {:.1}s", t.elapsed().as_secs_f64());

    // Churn service, in process.
    let mut ch_config = augur_churn::default_config();
    ch_config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    ch_config.server.request_timeout_ms = 120_000;
    ch_config.server.max_concurrent_requests = 4096;
    ch_config.data_dir = dir.path().join("churn");
    ch_config.feature_store_url = fs_handle.url();
    let ch_handle = augur_churn::build(&ch_config).spawn().await?;
    // HTTP/2 receive windows sized for a 1,000-customer answer (h2's default is 64 KiB, which
    // makes a large response wait for window updates), as the services' own channels have them.
    let channel = tonic::transport::Endpoint::from_shared(ch_handle.url())?
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(augur_runtime::client::STREAM_WINDOW))
        .initial_connection_window_size(Some(augur_runtime::client::CONNECTION_WINDOW))
        .connect()
        .await?;
    let mut churn = ChurnClient::new(channel.clone()).max_decoding_message_size(256 << 20);

    let ex_cutoffs: Vec<i64> = std::env::var("CHURN_EXAMPLE_CUTOFFS")
        .unwrap_or_else(|_| "1997-06-30".into())
        .split(',')
        .map(|s| date(s).map(end_of))
        .collect::<anyhow::Result<_>>()?;
    let hp: std::collections::BTreeMap<String, String> = std::env::var("CHURN_HP")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let t = Instant::now();
    let mut stream = churn
        .train(cpb::TrainRequest {
            cutoff: Some(ts(cutoff)),
            horizon_days,
            example_cutoffs: ex_cutoffs.iter().map(|&c| ts(c)).collect(),
            validation_fraction: 0.2,
            hyperparameters: hp,
        })
        .await?
        .into_inner();
    let mut info = None;
    while let Some(p) = stream.message().await? {
        if p.stage != "training" || p.message.contains("epoch 1/") {
            println!(
                "  [{:>5.1}s] {:<10} {}",
                t.elapsed().as_secs_f64(),
                p.stage,
                p.message
            );
        }
        if p.done {
            info = p.model;
        }
    }
    let train_s = t.elapsed().as_secs_f64();
    let info = info.ok_or_else(|| anyhow::anyhow!("Train ended without a model"))?;
    println!(
        "trained {} in {train_s:.1}s: {}",
        info.model_version, info.description
    );
    let mut vm: Vec<_> = info.validation_metrics.iter().collect();
    vm.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in vm {
        println!("  validation {k} = {v:.4}");
    }
    for (k, v) in &info.parameters {
        println!("  parameter {k} = {v}");
    }

    // Predict as of the cutoff for every customer.
    let t = Instant::now();
    let mut pred: HashMap<String, (f64, f64)> = HashMap::new();
    for chunk in customers.chunks(1_000) {
        let r = churn
            .predict_churn(cpb::PredictChurnRequest {
                customer_ids: chunk.to_vec(),
                as_of: Some(ts(cutoff)),
                max_factors: 3,
            })
            .await?
            .into_inner();
        anyhow::ensure!(r.errors.is_empty(), "errors: {:?}", r.errors.first());
        for p in r.predictions {
            pred.insert(p.customer_id, (p.churn_probability, p.expected_purchases));
        }
    }
    println!(
        "scored {} customers in {:.1}s",
        pred.len(),
        t.elapsed().as_secs_f64()
    );
    let labels: Vec<bool> = customers.iter().map(|c| holdout[c] == 0.0).collect();
    let actual: f64 = customers.iter().map(|c| holdout[c]).sum();
    let churn_rate = labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64;
    let probs: Vec<f64> = customers.iter().map(|c| pred[c].0).collect();
    let model_purchases: f64 = customers.iter().map(|c| pred[c].1).sum();

    // Baselines from the crate's own code: features through the same feature store.
    let names: Vec<String> = [
        "recency_days",
        "frequency_lifetime",
        "monetary_lifetime",
        "days_since_first_order",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let store = augur_churn::fs::FeatureStore::new(augur_runtime::client::intercepted(
        Channel::from_shared(fs_handle.url())?.connect().await?,
    ));
    let at_cut: Vec<Record> =
        features::records(store.features(&customers, Some(cutoff), &names).await?)
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
    let refs: Vec<&Record> = at_cut.iter().collect();
    let t_fit = Instant::now();
    let btyd = augur_churn::train::fit_btyd(&refs);
    let fit_s = t_fit.elapsed().as_secs_f64();
    let BgNbd { r, alpha, a, b } = btyd.bgnbd;
    let ParetoNbd {
        r: pr,
        alpha: pa,
        s,
        beta,
    } = btyd.pareto;
    println!(
        "BTYD fit as of the cutoff in {fit_s:.1}s: BG/NBD r={r:.3} alpha={alpha:.3} a={a:.3} b={b:.3}; Pareto/NBD r={pr:.3} alpha={pa:.3} s={s:.3} beta={beta:.3} (weeks)"
    );
    let hw = f64::from(horizon_days) / 7.0;
    let rfms: Vec<_> = at_cut.iter().map(|r| r.rfm()).collect();
    let bg_p: Vec<f64> = rfms
        .iter()
        .map(|c| c.map_or(1.0, |c| btyd.bgnbd.p_no_purchase(&c, hw)))
        .collect();
    let pn_p: Vec<f64> = rfms
        .iter()
        .map(|c| c.map_or(1.0, |c| btyd.pareto.p_no_purchase(&c, hw)))
        .collect();
    let bg_e: f64 = rfms
        .iter()
        .flatten()
        .map(|c| btyd.bgnbd.expected(c, hw))
        .sum();
    let pn_e: f64 = rfms
        .iter()
        .flatten()
        .map(|c| btyd.pareto.expected(c, hw))
        .sum();
    let recency: Vec<f64> = at_cut
        .iter()
        .map(|r| r.get("recency_days").unwrap_or(1e9))
        .collect();
    // RFM logistic regression, trained past-only: features as of 1997-06-30, label Jul-Sep.
    let c0 = end_of(date("1997-06-30")?);
    let at_c0 = features::records(store.features(&customers, Some(c0), &names).await?);
    let at_c0_end = features::records(
        store
            .features(
                &customers,
                Some(cutoff),
                &["frequency_lifetime".to_string()],
            )
            .await?,
    );
    let (mut lx, mut ly) = (Vec::new(), Vec::new());
    for (r0, r1) in at_c0.iter().zip(&at_c0_end) {
        if let (Some(r0), Some(r1)) = (r0, r1) {
            lx.push(rfm_row(r0));
            ly.push(r1.get("frequency_lifetime") == r0.get("frequency_lifetime"));
        }
    }
    let w = logistic(&lx, &ly);
    let lr_p: Vec<f64> = at_cut.iter().map(|r| lr_predict(&w, &rfm_row(r))).collect();

    let row = |name: &str, scores: &[f64], probs: Option<&[f64]>, purchases: Option<f64>| Row {
        name: name.to_string(),
        auc: metrics::roc_auc(scores, &labels).unwrap_or(f64::NAN),
        pr: metrics::pr_auc(scores, &labels).unwrap_or(f64::NAN),
        brier: probs.map(|p| metrics::brier(p, &labels)),
        purchases,
    };
    let table = vec![
        row("days since last purchase", &recency, None, None),
        row(
            "BG/NBD (own MLE), P(no purchase in 273 d)",
            &bg_p,
            Some(&bg_p),
            Some(bg_e),
        ),
        row(
            "Pareto/NBD (own MLE), P(no purchase in 273 d)",
            &pn_p,
            Some(&pn_p),
            Some(pn_e),
        ),
        row(
            "logistic regression on RFM, past-only (Jul-Sep labels)",
            &lr_p,
            Some(&lr_p),
            None,
        ),
        row(
            &format!(
                "served model: NAM `{}` + Platt (via gRPC)",
                info.parameters.get("variant").cloned().unwrap_or_default()
            ),
            &probs,
            Some(&probs),
            Some(model_purchases),
        ),
    ];
    println!();
    println!(
        "All {} customers, churn rate {:.3}, actual holdout purchases {actual:.0}",
        customers.len(),
        churn_rate
    );
    println!(
        "| model | ROC-AUC | PR-AUC (churned=1) | Brier | predicted purchases (vs {actual:.0}) |"
    );
    println!("|---|---|---|---|---|");
    for r in &table {
        println!(
            "| {} | {:.4} | {:.4} | {} | {} |",
            r.name,
            r.auc,
            r.pr,
            r.brier.map_or("-".into(), |b| format!("{b:.4}")),
            r.purchases.map_or("-".into(), |p| format!(
                "{p:.0} ({:+.1}%)",
                100.0 * (p - actual) / actual
            )),
        );
    }
    println!(
        "served model: mean probability {:.4} against a churn rate of {churn_rate:.4}",
        probs.iter().sum::<f64>() / probs.len().max(1) as f64
    );
    println!("training wall time (Train RPC, features + fits + save): {train_s:.1}s");

    // Past-only evidence on the expected-purchase correction: BG/NBD fitted on the histories as
    // of earlier moments, its expected purchases against the actual ones over windows of growing
    // length that all end by the cutoff (the data the model may see).
    println!();
    println!("BG/NBD expected vs actual purchases, past-only windows (fit at the window's start):");
    println!("| fitted as of | window | days | customers | actual | BG/NBD | actual / BG/NBD |");
    println!("|---|---|---|---|---|---|---|");
    let freq = vec!["frequency_lifetime".to_string()];
    for (start, ends) in [
        ("1997-03-31", &["1997-06-30", "1997-09-30"][..]),
        ("1997-06-30", &["1997-09-30"][..]),
    ] {
        let s = end_of(date(start)?);
        let at_s = features::records(store.features(&customers, Some(s), &names).await?);
        let known: Vec<&Record> = at_s.iter().flatten().collect();
        let fit = augur_churn::train::fit_btyd(&known);
        for end in ends {
            let e = end_of(date(end)?);
            let at_e = features::records(store.features(&customers, Some(e), &freq).await?);
            let weeks = (e - s) as f64 / (7.0 * 86_400.0);
            let (mut act, mut exp, mut n) = (0.0, 0.0, 0usize);
            for (r0, r1) in at_s.iter().zip(&at_e) {
                let (Some(r0), Some(r1)) = (r0, r1) else {
                    continue;
                };
                let Some(c) = r0.rfm() else { continue };
                n += 1;
                act += r1.get("frequency_lifetime").unwrap_or(0.0)
                    - r0.get("frequency_lifetime").unwrap_or(0.0);
                exp += fit.bgnbd.expected(&c, weeks);
            }
            println!(
                "| {start} | to {end} | {:.0} | {n} | {act:.0} | {exp:.0} | {:.3} |",
                weeks * 7.0,
                act / exp
            );
        }
    }

    // The information ceiling: trees fitted on the test labels themselves, cross-fitted.
    let folds = 5;
    let t = Instant::now();
    let mut cx = augur_bench::churn_ceiling::features(&rows, cutoff_day, &customers);
    // And what the served model sees beyond the history: the BTYD models' 273-day outputs.
    for (i, row) in cx.iter_mut().enumerate() {
        let e = rfms[i].map_or(0.0, |c| btyd.bgnbd.expected(&c, hw));
        row.extend([bg_p[i] as f32, pn_p[i] as f32, e as f32]);
    }
    let mut ceiling = Vec::new();
    for (depth, trees, min_leaf) in [(3, 300, 50), (4, 400, 100), (2, 300, 30)] {
        let p = augur_model::gbdt::GbdtParams {
            trees,
            depth,
            learning_rate: 0.03,
            min_leaf,
            bins: 64,
            ..Default::default()
        };
        let probs = augur_bench::churn_ceiling::cross_fitted(&cx, &labels, folds, &p);
        ceiling.push(row(
            &format!("depth {depth}, {trees} trees, min leaf {min_leaf}"),
            &probs,
            Some(&probs),
            None,
        ));
    }
    println!();
    println!(
        "Information ceiling (a diagnostic, not a model): boosted trees fitted on the TEST labels, {folds}-fold cross-fitted, over {} features: the order history incl. the last {} purchase days, and BG/NBD + Pareto/NBD outputs for 273 days ({:.1}s)",
        cx.first().map_or(0, Vec::len),
        augur_bench::churn_ceiling::SEQUENCE_STEPS,
        t.elapsed().as_secs_f64()
    );
    println!("| trees fitted on the test labels | ROC-AUC | PR-AUC | Brier |");
    println!("|---|---|---|---|");
    for r in &ceiling {
        println!(
            "| {} | {:.4} | {:.4} | {:.4} |",
            r.name,
            r.auc,
            r.pr,
            r.brier.unwrap_or(f64::NAN)
        );
    }

    // Latency over loopback gRPC, features fetched online from the feature store.
    let iters: usize = std::env::var("LAT_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let lat = |n: usize, reps: usize| {
        let churn = ChurnClient::new(channel.clone());
        let customers = customers.clone();
        async move {
            let mut v = Vec::with_capacity(reps);
            let mut c = churn;
            for i in 0..reps + 20 {
                let start = (i * 7919 * n) % (customers.len() - n);
                let ids = customers[start..start + n].to_vec();
                let t = Instant::now();
                let r = c
                    .predict_churn(cpb::PredictChurnRequest {
                        customer_ids: ids,
                        as_of: None,
                        max_factors: 5,
                    })
                    .await?;
                let d = t.elapsed();
                anyhow::ensure!(r.get_ref().predictions.len() == n);
                if i >= 20 {
                    v.push(d.as_secs_f64() * 1e3);
                }
            }
            anyhow::Ok(v)
        }
    };
    // The feature-store read alone, for the same batch sizes (what PredictChurn waits for).
    let fs_lat = |n: usize, reps: usize| {
        let store = store.clone();
        let customers = customers.clone();
        async move {
            let names = vec![
                "frequency_lifetime".to_string(),
                "recency_days".to_string(),
                "days_since_first_order".to_string(),
            ];
            let mut v = Vec::with_capacity(reps);
            for i in 0..reps + 20 {
                let start = (i * 7919 * n) % (customers.len() - n);
                let t = Instant::now();
                let _ = store
                    .features(&customers[start..start + n], None, &names)
                    .await?;
                if i >= 20 {
                    v.push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
            anyhow::Ok(v)
        }
    };
    // Where the 1,000-customer time goes: the feature-store read of every feature the model uses,
    // and the model's compute in process (the served artefact loaded from disk).
    let served = augur_churn::load_latest(&augur_model::ArtifactStore::new(
        &ch_config.data_dir,
        augur_churn::model::MODEL_NAME,
    ))
    .ok_or_else(|| anyhow::anyhow!("no saved model"))?;
    let needed = served.needed_features();
    let (mut fs_full, mut compute) = (Vec::new(), Vec::new());
    for i in 0..60 {
        let start = (i * 7919 * 1000) % (customers.len() - 1000);
        let t = Instant::now();
        let rows = store
            .features(&customers[start..start + 1000], None, &needed)
            .await?;
        let fetched = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let recs = features::records(rows);
        let n = served
            .predict_batch(recs, 5)
            .iter()
            .flatten()
            .filter(|(_, p)| p.probability >= 0.0)
            .count();
        let computed = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(n == 1000);
        if i >= 10 {
            fs_full.push(fetched);
            compute.push(computed);
        }
    }
    let full_name = format!(
        "(feature-store GetOnlineFeatures alone, 1,000 customers, the model's {} features)",
        needed.len()
    );
    let mut fs_one = fs_lat(1, iters).await?;
    let mut fs_thousand = fs_lat(1_000, (iters / 5).max(20)).await?;
    let mut one = lat(1, iters).await?;
    let mut thousand = lat(1_000, (iters / 5).max(20)).await?;
    println!();
    println!(
        "| PredictChurn (loopback gRPC, online features from the feature store) | requests | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|");
    for (name, v) in [
        ("1 customer", &mut one),
        ("1,000 customers", &mut thousand),
        (
            "(feature-store GetOnlineFeatures alone, 1 customer, 3 features)",
            &mut fs_one,
        ),
        (
            "(feature-store GetOnlineFeatures alone, 1,000 customers, 3 features)",
            &mut fs_thousand,
        ),
        (full_name.as_str(), &mut fs_full),
        (
            "(model compute in process: decode rows + predict + top-5 factors, 1,000 customers)",
            &mut compute,
        ),
    ] {
        let n = v.len();
        println!(
            "| {name} | {n} | {:.2} | {:.2} |",
            pct(v, 0.5),
            pct(v, 0.99)
        );
    }
    // ListAtRisk over every known customer (23,570), without and with a segment filter.
    println!();
    println!("| ListAtRisk (min_probability 0.5, limit 100) | matching | wall s |");
    println!("|---|---|---|");
    let mut c = ChurnClient::new(channel.clone());
    for (name, segment) in [
        ("any segment", fpb::Segment::Unspecified),
        ("any segment (again)", fpb::Segment::Unspecified),
        ("segment AT_RISK", fpb::Segment::AtRisk),
        ("segment HIBERNATING", fpb::Segment::Hibernating),
    ] {
        let t = Instant::now();
        let r = c
            .list_at_risk(cpb::ListAtRiskRequest {
                min_probability: 0.5,
                limit: 100,
                segment: segment as i32,
            })
            .await?
            .into_inner();
        println!(
            "| {name} | {} | {:.2} |",
            r.total_matching,
            t.elapsed().as_secs_f64()
        );
    }
    let _ = ch_handle.shutdown().await;
    let _ = fs_handle.shutdown().await;
    Ok(())
}

/// `churn-bench --demo`: the default demo data set and a default (all fields empty) Train request,
/// as `augur up --demo` sends it; prints the wall time.
async fn demo() -> anyhow::Result<()> {
    let data = augur_demo::generate(&augur_demo::DemoConfig::default());
    let dir = tempfile::tempdir()?;
    let fs_config = FsConfig {
        server: ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout_ms: 120_000,
            ..ServerConfig::default()
        },
        data_dir: dir.path().join("fs"),
        hash_key: Secret::new("benchmark-hash-key-000000"),
        sqlite_synchronous: "normal".into(),
        ..FsConfig::default()
    };
    let (fs_server, _app) = augur_feature_store::build(&fs_config).await?;
    let fs_handle = fs_server.spawn().await?;
    let mut fs = FeatureStoreClient::connect(fs_handle.url()).await?;
    for chunk in data.events.chunks(5_000) {
        fs.ingest(fpb::IngestRequest {
            events: chunk.to_vec(),
        })
        .await?;
    }
    let mut ch_config = augur_churn::default_config();
    ch_config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    ch_config.data_dir = dir.path().join("churn");
    ch_config.feature_store_url = fs_handle.url();
    let ch_handle = augur_churn::build(&ch_config).spawn().await?;
    let mut churn = ChurnClient::connect(ch_handle.url()).await?;
    let t = Instant::now();
    let mut stream = churn
        .train(cpb::TrainRequest::default())
        .await?
        .into_inner();
    while let Some(p) = stream.message().await? {
        if p.stage != "training" || p.message.contains("epoch 1/") {
            println!(
                "  [{:>5.1}s] {:<10} {}",
                t.elapsed().as_secs_f64(),
                p.stage,
                p.message
            );
        }
        if let Some(m) = p.model {
            println!("validation {:?}", m.validation_metrics);
        }
    }
    println!(
        "demo data ({} events): default Train in {:.1}s",
        data.events.len(),
        t.elapsed().as_secs_f64()
    );
    let _ = ch_handle.shutdown().await;
    let _ = fs_handle.shutdown().await;
    Ok(())
}
