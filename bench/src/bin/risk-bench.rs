//! Risk benchmark (`make bench-risk`): model quality on public data and serving speed.
//!
//! 1. Credit (`credit/credit_data.csv`, target `Status == bad`): stratified 70/30 split, the
//!    one the anchors were run on (scikit-learn's `train_test_split` with
//!    `random_state=42`, reproduced by `augur_model::split`; `CREDIT_SPLIT=augur` for our own
//!    seed-42 split of the earlier runs); every model is fitted on the 70% only, with model selection (learner, L2) and Platt
//!    calibration on a stratified 20% validation split carved from that 70%; missing values are
//!    handled inside the pipeline (median imputation + missing indicators, a "missing" level).
//!    ROC-AUC, PR-AUC and Brier on the 30% test split.
//! 2. Spam (`spam/spamassassin_dev.jsonl`, subject + body): stratified 80/20 split (seed 42);
//!    L2 chosen on a 20% validation split of the 80%; F1 at the decision threshold 0.5. TF-IDF
//!    (hashed word 1-2 grams + char 3-5 grams) + logistic regression, and MiniLM (candle, 256
//!    tokens, mean pooled, normalised) + logistic regression; documents/s of the MiniLM encoder.
//! 3. Speed over loopback gRPC, feature store in process with the demo data: ScoreOrder open loop
//!    at 1,000 requests/s (features from the feature store); ScoreReview single 100-word review
//!    latency and concurrent throughput.
//!
//! Env: `RISK_BENCH` = comma list of `credit,spam,speed` (default all); `RISK_TRAIN_HP`
//! (`k=v,...`: hyper-parameters of the speed section's Train calls); `CREDIT_SEEDS` (comma
//! list: also run the credit rows on these split seeds and print mean +- sd, a robustness check
//! beside the seed-42 protocol); `SPAM_LIMIT` (docs, for a quick run); `ORDER_RPS` (default
//! 1000), `ORDER_SECS` (default 10).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use augur_model::metrics;
use augur_proto::featurestore as fpb;
use augur_proto::risk as pb;
use augur_proto::risk::risk_client::RiskClient;
use augur_risk::app::{TrainOptions, fit_table};
use augur_risk::embed::{self, Embedder};
use augur_risk::linear::{Logistic, LogisticParams, SparseRow, sparse};
use augur_risk::tabular::{Cell, FitOptions, Learner, TabularModel, stratified_split};
use augur_risk::text::TfIdf;
use augur_testkit::datasets;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

struct Row {
    name: String,
    roc: f64,
    pr: f64,
    brier: f64,
    extra: String,
}

fn report(rows: &[Row]) {
    println!("| model | ROC-AUC | PR-AUC | Brier | notes |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {} |",
            r.name, r.roc, r.pr, r.brier, r.extra
        );
    }
}

fn eval(name: &str, p: &[f64], y: &[bool], extra: String) -> Row {
    Row {
        name: name.into(),
        roc: metrics::roc_auc(p, y).unwrap_or(f64::NAN),
        pr: metrics::pr_auc(p, y).unwrap_or(f64::NAN),
        brier: metrics::brier(p, y),
        extra,
    }
}

// ---------------------------------------------------------------------------------- credit

/// The protocol's 70/30 split (env `CREDIT_SPLIT`): by default (`sklearn`) scikit-learn's
/// `train_test_split(..., test_size=0.3, stratify=y, random_state=seed)` reproduced row for
/// row, the split the anchors were run on (seed 42 gives their logistic regression's
/// 0.844 / 0.688 / 0.136 in scikit-learn); `augur` draws our own stratified split instead (the
/// protocol split of the runs up to 2026-11-30: 1,336 test rows).
#[derive(Clone, Copy)]
enum OuterSplit {
    Sklearn,
    Augur,
}

impl OuterSplit {
    fn from_env() -> anyhow::Result<OuterSplit> {
        match std::env::var("CREDIT_SPLIT").ok().as_deref().map(str::trim) {
            None | Some("" | "sklearn") => Ok(OuterSplit::Sklearn),
            Some("augur") => Ok(OuterSplit::Augur),
            Some(other) => {
                anyhow::bail!("CREDIT_SPLIT={other:?}: expected sklearn (the default) or augur")
            }
        }
    }

    /// (train, test) row indices for `seed`.
    fn split(self, y: &[bool], seed: u32) -> (Vec<usize>, Vec<usize>) {
        match self {
            OuterSplit::Sklearn => augur_model::split::sklearn_stratified_split(y, 0.3, seed),
            OuterSplit::Augur => stratified_split(y, 0.3, seed.into()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            OuterSplit::Sklearn => "scikit-learn's train_test_split, the anchors' split",
            OuterSplit::Augur => "ours, CREDIT_SPLIT=augur",
        }
    }
}

/// The supervised rows of the credit table for one split seed (70/30, then 20% of the 70% for
/// validation, both stratified with `seed`); also the split itself.
fn credit_split(
    outer: OuterSplit,
    seed: u32,
    columns: &[String],
    rows: &[Vec<Cell>],
    y: &[bool],
    verbose: bool,
) -> (Vec<Row>, Vec<usize>, Vec<usize>) {
    let (train, test) = outer.split(y, seed);
    let (tr, va) = stratified_split(
        &train.iter().map(|&i| y[i]).collect::<Vec<_>>(),
        0.2,
        seed.into(),
    );
    let pick = |ix: &[usize]| -> (Vec<&Vec<Cell>>, Vec<bool>) {
        (
            ix.iter().map(|&i| &rows[i]).collect(),
            ix.iter().map(|&i| y[i]).collect(),
        )
    };
    let (trx, try_) = pick(&tr.iter().map(|&k| train[k]).collect::<Vec<_>>());
    let (vax, vay) = pick(&va.iter().map(|&k| train[k]).collect::<Vec<_>>());
    let (tex, tey) = pick(&test);
    if verbose {
        println!(
            "split ({}, seed {seed}): train {} (fit {} + validation {}), test {} (row index sum {})",
            outer.describe(),
            train.len(),
            trx.len(),
            vax.len(),
            tex.len(),
            test.iter().sum::<usize>()
        );
    }
    let mut out = Vec::new();
    let base = FitOptions {
        epochs: 150,
        l2: vec![1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
        ..FitOptions::default()
    };
    let all = vec![
        Learner::Linear,
        Learner::Spline,
        Learner::Gbdt,
        Learner::Blend,
    ];
    // (row, learners, with the pairwise log-ratio features as a validation choice)
    let candidates: Vec<(&str, Vec<Learner>, bool)> = vec![
        (
            "logistic regression (one-hot, scaling, imputation) [anchor]",
            vec![Learner::Linear],
            false,
        ),
        (
            "gradient-boosted trees [anchor: HistGB / LightGBM]",
            vec![Learner::Gbdt],
            false,
        ),
        (
            "logistic regression + linear splines",
            vec![Learner::Spline],
            false,
        ),
        (
            "blend: spline logistic + trees",
            vec![Learner::Blend],
            false,
        ),
        (
            "SELECTED on validation log loss among the four (no ratio features)",
            all.clone(),
            false,
        ),
        (
            "logistic regression, ratio features offered",
            vec![Learner::Linear],
            true,
        ),
        ("blend, ratio features offered", vec![Learner::Blend], true),
        (
            "SELECTED on validation log loss among the four, each with and without ratio features (what Train served until 2026-11-30 09:40 UTC)",
            all.clone(),
            true,
        ),
        (
            "the same, not refitted: fitted on the 80%, calibrated on the 20% (what Train served before 2026-11-30)",
            all.clone(),
            true,
        ),
        (
            "SELECTED by 5-fold cross-validated log loss over the whole 70% among the four, each with and without ratio features (what Train serves)",
            all,
            true,
        ),
    ];
    let not_refitted = candidates.len() - 2;
    let cross_validated = candidates.len() - 1;
    for (row, (name, learners, ratio_features)) in candidates.into_iter().enumerate() {
        let t = Instant::now();
        let o = FitOptions {
            learners,
            ratio_features,
            refit_folds: if row == not_refitted {
                0
            } else {
                base.refit_folds
            },
            select_folds: if row == cross_validated { 5 } else { 0 },
            ..base.clone()
        };
        let (m, vm) = TabularModel::fit(columns, (&trx, &try_), (&vax, &vay), &o);
        let p: Vec<f64> = tex.iter().map(|r| m.predict(r)).collect();
        out.push(eval(
            name,
            &p,
            &tey,
            format!(
                "picked {}{} l2={} (validation ROC-AUC {:.3}, cross-validated log loss {:.4}); fit {:.1}s",
                m.learner.name(),
                if m.encoder.ratios.is_empty() {
                    ""
                } else {
                    " + ratios"
                },
                m.l2,
                vm.get("roc_auc").copied().unwrap_or(f64::NAN),
                vm.get("cv_log_loss").copied().unwrap_or(f64::NAN),
                t.elapsed().as_secs_f64()
            ),
        ));
    }
    (out, train, test)
}

fn credit() -> anyhow::Result<()> {
    let outer = OuterSplit::from_env()?;
    // Robustness seeds (CREDIT_SEEDS=1,2,...): scikit-learn's random_state is a 32-bit integer.
    let seeds: Vec<u32> = std::env::var("CREDIT_SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.trim().parse().map_err(|_| {
                anyhow::anyhow!("CREDIT_SEEDS: {v:?} is not a seed (an integer 0..=4294967295)")
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let Some(path) = datasets::require("credit/credit_data.csv") else {
        return Ok(());
    };
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let categorical = ["Home", "Marital", "Records", "Job"];
    let columns: Vec<String> = header[1..].to_vec();
    let mut rows = Vec::new();
    let mut y = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        if f.len() != header.len() {
            continue;
        }
        y.push(f[0].trim() == "bad");
        rows.push(
            f[1..]
                .iter()
                .zip(&columns)
                .map(|(v, c)| {
                    let v = v.trim();
                    if v.is_empty() || v == "NA" {
                        Cell::Missing
                    } else if categorical.contains(&c.as_str()) {
                        Cell::Cat(v.to_string())
                    } else {
                        v.parse().map_or(Cell::Missing, Cell::Num)
                    }
                })
                .collect::<Vec<Cell>>(),
        );
    }
    let missing = rows
        .iter()
        .flatten()
        .filter(|c| matches!(c, Cell::Missing))
        .count();
    println!(
        "\n## Credit: {} applications, {} bad, {} missing cells",
        rows.len(),
        y.iter().filter(|&&b| b).count(),
        missing
    );
    let (mut out, train, test) = credit_split(outer, 42, &columns, &rows, &y, true);
    let (tex, tey): (Vec<&Vec<Cell>>, Vec<bool>) = (
        test.iter().map(|&i| &rows[i]).collect(),
        test.iter().map(|&i| y[i]).collect(),
    );
    // Unsupervised: the isolation forest of the same pipeline, fitted on the 70% without labels.
    let train_rows: Vec<Vec<Cell>> = train.iter().map(|&i| rows[i].clone()).collect();
    let unl: Vec<Option<bool>> = vec![None; train_rows.len()];
    let fit = fit_table(&columns, &train_rows, &unl, &TrainOptions::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let p: Vec<f64> = tex
        .iter()
        .map(|r| fit.model.score_cells(r, None).anomaly_score)
        .collect();
    out.push(eval(
        "isolation forest, unsupervised [anchor]",
        &p,
        &tey,
        "score = share of training rows less anomalous (not a probability: Brier not meaningful)"
            .into(),
    ));
    report(&out);
    // Robustness: the same protocol on other split seeds (CREDIT_SEEDS=1,2,...), mean and
    // standard deviation of each row's test figures. Not the protocol's figure (seed 42 is).
    if !seeds.is_empty() {
        let mut per_row: BTreeMap<usize, (String, Vec<(f64, f64)>)> = BTreeMap::new();
        for &seed in &seeds {
            let (rows_out, _, _) = credit_split(outer, seed, &columns, &rows, &y, false);
            for (i, r) in rows_out.into_iter().enumerate() {
                per_row
                    .entry(i)
                    .or_insert_with(|| (r.name.clone(), Vec::new()))
                    .1
                    .push((r.roc, r.brier));
            }
        }
        println!(
            "\n### Credit over {} split seeds {seeds:?} (test ROC-AUC / Brier, mean +- sd)",
            seeds.len()
        );
        println!("| model | ROC-AUC | Brier |\n|---|---|---|");
        let ms = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
            (m, sd)
        };
        for (name, v) in per_row.values() {
            let (rm, rs) = ms(&v.iter().map(|p| p.0).collect::<Vec<_>>());
            let (bm, bs) = ms(&v.iter().map(|p| p.1).collect::<Vec<_>>());
            println!("| {name} | {rm:.4} +- {rs:.4} | {bm:.4} +- {bs:.4} |");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------- spam

/// Subject + body of a raw e-mail (headers other than Subject dropped).
fn subject_body(raw: &str) -> String {
    let (head, body) = match raw.find("\n\n") {
        Some(i) => (&raw[..i], &raw[i + 2..]),
        None => (raw, ""),
    };
    let subject = head
        .lines()
        .find_map(|l| l.strip_prefix("Subject:"))
        .unwrap_or("")
        .trim();
    format!("{subject}\n{body}")
}

fn fit_lr_select(
    x: &[SparseRow],
    y: &[bool],
    dim: usize,
    l2s: &[f32],
    epochs: usize,
) -> (Logistic, f32) {
    let (tr, va) = stratified_split(y, 0.2, 42);
    let sub = |ix: &[usize]| -> (Vec<SparseRow>, Vec<bool>) {
        (
            ix.iter().map(|&i| x[i].clone()).collect(),
            ix.iter().map(|&i| y[i]).collect(),
        )
    };
    let (tx, ty) = sub(&tr);
    let (vx, vy) = sub(&va);
    let dense = |rows: &[SparseRow]| -> Vec<Vec<f32>> {
        rows.iter()
            .map(|r| {
                let mut d = vec![0.0; dim];
                for &(i, v) in r {
                    d[i as usize] = v;
                }
                d
            })
            .collect()
    };
    // Small dense problems (embeddings) are solved exactly by Newton's method.
    let fit = |x: &[SparseRow], y: &[bool], l2: f32| -> Logistic {
        if dim <= 400 {
            Logistic::fit_newton(&dense(x), y, l2, 50)
        } else {
            let p = LogisticParams {
                l2,
                epochs,
                batch: 32,
                learning_rate: 0.05,
                ..Default::default()
            };
            Logistic::fit(x, y, dim, &p)
        }
    };
    let mut best = (f64::INFINITY, l2s[0]);
    for &l2 in l2s {
        let m = fit(&tx, &ty, l2);
        let pv: Vec<f64> = vx.iter().map(|r| m.predict(r) as f64).collect();
        let ll = metrics::log_loss(&pv, &vy);
        if ll < best.0 {
            best = (ll, l2);
        }
    }
    (fit(x, y, best.1), best.1)
}

fn spam() -> anyhow::Result<()> {
    let Some(path) = datasets::require("spam/spamassassin_dev.jsonl") else {
        return Ok(());
    };
    let limit: usize = std::env::var("SPAM_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let mut docs = Vec::new();
    let mut y = Vec::new();
    for l in std::fs::read_to_string(path)?.lines().take(limit) {
        let v: serde_json::Value = serde_json::from_str(l)?;
        docs.push(subject_body(v["text"].as_str().unwrap_or("")));
        y.push(v["label"].as_str() == Some("spam"));
    }
    println!(
        "\n## Spam: {} e-mails, {} spam",
        docs.len(),
        y.iter().filter(|&&b| b).count()
    );
    let (train, test) = stratified_split(&y, 0.2, 42);
    let ytr: Vec<bool> = train.iter().map(|&i| y[i]).collect();
    let yte: Vec<bool> = test.iter().map(|&i| y[i]).collect();
    println!("split: train {} test {}", train.len(), test.len());
    let mut out = Vec::new();

    // TF-IDF + logistic regression
    let t = Instant::now();
    let trd: Vec<&str> = train.iter().map(|&i| docs[i].as_str()).collect();
    let tfidf = TfIdf::fit(&trd, 18, 5000);
    let xtr: Vec<SparseRow> = trd.iter().map(|d| tfidf.transform(d)).collect();
    let (m, l2) = fit_lr_select(&xtr, &ytr, tfidf.dim(), &[1e-6, 1e-5, 1e-4], 8);
    let fit_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let p: Vec<f64> = test
        .iter()
        .map(|&i| m.predict(&tfidf.transform(&docs[i])) as f64)
        .collect();
    let dps = test.len() as f64 / t.elapsed().as_secs_f64();
    let f1 = metrics::f1_at(&p, &yte, 0.5);
    out.push(eval(
        "TF-IDF (word 1-2 + char 3-5 grams, hashed 2^18) + logistic regression",
        &p,
        &yte,
        format!("F1@0.5 {f1:.3}; l2={l2}; fit {fit_s:.1}s; scoring {dps:.0} docs/s"),
    ));

    // MiniLM + logistic regression
    let dir = embed::default_dir();
    if !embed::present(&dir) {
        println!(
            "*** MiniLM not found in {} (make minilm): MiniLM row skipped ***",
            dir.display()
        );
    } else {
        let e = Embedder::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
        let engine = e.engine().name();
        let all: Vec<&str> = docs.iter().map(String::as_str).collect();
        let tokens = e.token_counts(&all).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mean_tokens = tokens.iter().sum::<usize>() as f64 / tokens.len() as f64;
        let at_max = tokens.iter().filter(|&&t| t == embed::MAX_TOKENS).count();
        // Throughput on the test split's documents.
        let ted: Vec<&str> = test.iter().map(|&i| docs[i].as_str()).collect();
        let t = Instant::now();
        let ete = e.embed(&ted).map_err(|e| anyhow::anyhow!("{e}"))?;
        let enc_dps = ted.len() as f64 / t.elapsed().as_secs_f64();
        // Throughput at exactly 256 tokens (PyTorch's anchor condition).
        let long: Vec<&str> = (0..docs.len())
            .filter(|&i| tokens[i] == embed::MAX_TOKENS)
            .take(200)
            .map(|i| docs[i].as_str())
            .collect();
        let t = Instant::now();
        let _ = e.embed(&long).map_err(|e| anyhow::anyhow!("{e}"))?;
        let dps256 = long.len() as f64 / t.elapsed().as_secs_f64();
        println!(
            "MiniLM encoder ({engine}): {enc_dps:.1} docs/s on the test split (mean {mean_tokens:.0} tokens, {at_max} of {} docs truncated at 256); {dps256:.1} docs/s on {} docs of exactly 256 tokens (PyTorch anchor: 31 docs/s at 256 tokens)",
            docs.len(),
            long.len()
        );
        let etr = e.embed(&trd).map_err(|e| anyhow::anyhow!("{e}"))?;
        let xtr: Vec<SparseRow> = etr.iter().map(|v| sparse(v)).collect();
        let (m, l2) = fit_lr_select(&xtr, &ytr, embed::DIM, &[1e-6, 1e-5, 1e-4, 1e-3], 60);
        let p: Vec<f64> = ete.iter().map(|v| m.predict(&sparse(v)) as f64).collect();
        let f1 = metrics::f1_at(&p, &yte, 0.5);
        out.push(eval(
            &format!("MiniLM ({engine}) mean-pooled embeddings + logistic regression"),
            &p,
            &yte,
            format!(
                "F1@0.5 {f1:.3}; l2={l2}; encoder {enc_dps:.1} docs/s (test split), {dps256:.1} docs/s at 256 tokens = {:.1}x PyTorch's 31",
                dps256 / 31.0
            ),
        ));
    }
    report(&out);
    Ok(())
}

// ---------------------------------------------------------------------------------- speed

async fn speed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let fs_cfg = augur_feature_store::Config {
        server: augur_runtime::config::ServerConfig::with_port(0),
        data_dir: dir.path().join("fs"),
        sqlite_synchronous: "off".into(),
        ..Default::default()
    };
    let (fs_server, _app) = augur_feature_store::build(&fs_cfg).await?;
    let fs = fs_server.spawn().await?;
    let data = augur_demo::generate(&augur_demo::DemoConfig::default());
    let mut fsc = fpb::feature_store_client::FeatureStoreClient::connect(fs.url())
        .await?
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let t = Instant::now();
    for chunk in data.events.chunks(5000) {
        fsc.ingest(fpb::IngestRequest {
            events: chunk.to_vec(),
        })
        .await?;
    }
    println!(
        "\n## Speed: demo data {} events loaded in {:.1}s",
        data.events.len(),
        t.elapsed().as_secs_f64()
    );
    let mut cfg = augur_risk::default_config();
    cfg.server = augur_runtime::config::ServerConfig::with_port(0);
    cfg.data_dir = dir.path().join("risk");
    cfg.feature_store_url = fs.url();
    let risk = augur_risk::try_build(&cfg)?.spawn().await?;
    let mut c = RiskClient::connect(risk.url()).await?;
    // `RISK_TRAIN_HP=k=v,k=v`: hyper-parameters of these Train calls (e.g. select_folds=5).
    let train_hp: BTreeMap<String, String> = std::env::var("RISK_TRAIN_HP")
        .unwrap_or_default()
        .split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("RISK_TRAIN_HP: {kv:?} is not key=value"))
        })
        .collect::<anyhow::Result<_>>()?;
    for kind in [pb::ModelKind::Order, pb::ModelKind::Review] {
        let t = Instant::now();
        let mut s = c
            .train(pb::TrainRequest {
                kind: kind as i32,
                hyperparameters: train_hp.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let mut info = None;
        while let Some(m) = s.message().await? {
            if m.done {
                info = m.model;
            }
        }
        let info = info.ok_or_else(|| anyhow::anyhow!("no model"))?;
        let vm: BTreeMap<_, _> = info.validation_metrics.iter().collect();
        println!(
            "default Train {kind:?}: {:.1}s, {} examples, validation {vm:?}",
            t.elapsed().as_secs_f64(),
            info.training_examples
        );
    }
    // `ORDER_BACKGROUND=N`: N more orders stored in the last 9 minutes: two from each device
    // the scored orders use (`bench-dev-0..299`), so that every velocity lookup finds stored
    // orders, the rest from devices of their own; and the time of the whole-window scan the
    // velocity lookup used to be.
    let background: usize = std::env::var("ORDER_BACKGROUND")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Orders to score (and the background's): customers of the demo data.
    let customers: Vec<String> = data
        .events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(fpb::event::Payload::Customer(c)) => Some(c.customer_id.clone()),
            _ => None,
        })
        .take(500)
        .collect();
    if background > 0 {
        let ids = &customers;
        let now = chrono::Utc::now().timestamp();
        let events: Vec<fpb::Event> = (0..background)
            .map(|i| fpb::Event {
                payload: Some(fpb::event::Payload::Order(fpb::Order {
                    order_id: format!("bg-{i}"),
                    customer_id: ids[i % ids.len()].clone(),
                    ts: Some(prost_types::Timestamp {
                        seconds: now - 540 + (i * 530 / background) as i64,
                        nanos: 0,
                    }),
                    lines: vec![fpb::OrderLine {
                        sku: "sku-00001".into(),
                        quantity: 1,
                        unit_price: 25.0,
                        promotion: false,
                    }],
                    currency: "EUR".into(),
                    payment_method: "card".into(),
                    shipping_country: "DE".into(),
                    billing_country: "DE".into(),
                    device_fingerprint: if i < 600 {
                        format!("bench-dev-{}", i % 300)
                    } else {
                        format!("bg-dev-{i}")
                    },
                    channel: "web".into(),
                    ..Default::default()
                })),
            })
            .collect();
        let t = Instant::now();
        for chunk in events.chunks(5000) {
            fsc.ingest(fpb::IngestRequest {
                events: chunk.to_vec(),
            })
            .await?;
        }
        println!(
            "{background} background orders in the last 9 minutes ingested in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let mut times = Vec::new();
        let mut seen = 0;
        for _ in 0..10 {
            let t = Instant::now();
            let mut st = fsc
                .scan_events(fpb::ScanEventsRequest {
                    kinds: vec![fpb::EventKind::Order as i32],
                    range: Some(augur_proto::common::TimeRange {
                        start: Some(prost_types::Timestamp {
                            seconds: now - 599,
                            nanos: 0,
                        }),
                        end: Some(prost_types::Timestamp {
                            seconds: now + 1,
                            nanos: 0,
                        }),
                    }),
                    batch_size: 5000,
                    ..Default::default()
                })
                .await?
                .into_inner();
            seen = 0;
            while let Some(m) = st.message().await? {
                seen += m.events.len();
            }
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "the whole 10-minute window (what each ScoreOrder read before the per-device index): {seen} orders in {:.1} ms (median of 10)",
            pct(&mut times, 0.5)
        );
    }
    // Orders to score: a customer of the demo data, fresh order ids.
    let now = chrono::Utc::now().timestamp();
    let make = move |k: usize| pb::ScoreOrderRequest {
        target: Some(pb::score_order_request::Target::Order(fpb::Order {
            order_id: format!("bench-{k}"),
            customer_id: customers[k % customers.len()].clone(),
            ts: Some(prost_types::Timestamp {
                seconds: now,
                nanos: 0,
            }),
            lines: vec![fpb::OrderLine {
                sku: "sku-00001".into(),
                quantity: 1 + (k % 3) as i64,
                unit_price: 20.0 + (k % 50) as f64,
                promotion: false,
            }],
            total: None,
            currency: "EUR".into(),
            payment_method: "card".into(),
            shipping_country: "DE".into(),
            billing_country: if k.is_multiple_of(10) {
                "FR".into()
            } else {
                "DE".into()
            },
            payment_fingerprint: String::new(),
            device_fingerprint: format!("bench-dev-{}", k % 300),
            ip_address: String::new(),
            status: 0,
            store_id: String::new(),
            channel: "web".into(),
        })),
    };
    let make = Arc::new(make);
    // warm-up + sequential latency
    let mut seq = Vec::new();
    for k in 0..300 {
        let t = Instant::now();
        c.score_order(make(k)).await?;
        seq.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "ScoreOrder sequential: p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut seq.clone(), 0.5),
        pct(&mut seq, 0.99)
    );
    let rps: f64 = std::env::var("ORDER_RPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000.0);
    let secs: f64 = std::env::var("ORDER_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    // The shared open-loop generator (`augur_bench::open_loop`: an OS thread of its own keeps
    // the schedule; latency from each request's scheduled start). Until 2026-12-02 this bench
    // issued requests from a task on the runtime that also runs both servers, sleeping on
    // tokio's 1 ms timer wheel, which started each request up to ~1 ms after its due time even
    // when idle (commit adf3b26 has both, the old one as `ORDER_GEN=tokio`).
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(1000));
    let (run, lag_p99) = augur_bench::open_loop(rps, Duration::from_secs_f64(secs), {
        let c = c.clone();
        let make = make.clone();
        move || {
            let mut c = c.clone();
            let make = make.clone();
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move { c.score_order(make(k)).await.is_ok() }
        }
    })
    .await;
    let lat = &run.latencies;
    println!(
        "ScoreOrder open loop {rps:.0}/s for {secs:.0}s: {} ok, {} errors, achieved {:.0}/s; latency from scheduled start p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (generator lag p99 {lag_p99:.2} ms)",
        lat.micros.len(),
        lat.errors,
        run.throughput(),
        lat.percentile(50.0),
        lat.percentile(99.0),
        lat.percentile(100.0)
    );

    // ScoreReview: a 100-word review.
    let words = "The blender arrived quickly and the packaging was fine. It crushes ice without trouble and the jug is easy to clean, although the motor is louder than I expected and the lid sometimes leaks when the jug is full. After three weeks of daily smoothies it still works well, the buttons feel solid and the price was fair compared with similar models. I would buy it again, but I hope the next version is quieter and comes with a better lid seal and a longer cable for our small kitchen, which has only one socket near the window.";
    println!("review text: {} words", words.split_whitespace().count());
    let review = move |k: usize| pb::ScoreReviewRequest {
        review: Some(fpb::Review {
            review_id: format!("bench-rev-{k}"),
            customer_id: "cust-00001".into(),
            sku: "sku-00002".into(),
            rating: 4,
            title: String::new(),
            text: words.to_string(),
            ts: Some(prost_types::Timestamp {
                seconds: now,
                nanos: 0,
            }),
            label: 0,
        }),
    };
    let mut lat = Vec::new();
    for k in 0..200 {
        let t = Instant::now();
        c.score_review(review(k)).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "ScoreReview single (sequential, 200): p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut lat.clone(), 0.5),
        pct(&mut lat, 0.99)
    );
    let n = 400;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let conc = 8;
    for w in 0..conc {
        let mut c = c.clone();
        set.spawn(async move {
            let mut ok = 0;
            for k in (w..n).step_by(conc) {
                if c.score_review(review(10_000 + k)).await.is_ok() {
                    ok += 1;
                }
            }
            ok
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        ok += r?;
    }
    println!(
        "ScoreReview throughput, {conc} concurrent clients: {ok}/{n} ok, {:.0} reviews/s",
        ok as f64 / t.elapsed().as_secs_f64()
    );
    risk.shutdown().await?;
    fs.shutdown().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let which = std::env::var("RISK_BENCH").unwrap_or_else(|_| "credit,spam,speed".into());
    println!(
        "risk-bench on {} CPU(s); sections: {which}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if which.contains("credit") {
        credit()?;
    }
    if which.contains("spam") {
        spam()?;
    }
    if which.contains("speed") {
        speed().await?;
    }
    Ok(())
}
