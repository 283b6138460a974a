//! The quality benchmark of BENCHMARKS.md ("Recommendation") on MovieLens small: the exact
//! protocol of issue #3 and every baseline from this crate's own code. Used by
//! `bench/src/bin/recommendation-bench.rs` (`make bench-recommendation`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::als::{Als, AlsConfig};
use crate::data::{Dataset, Ev, RawInteraction, chrono_split};
use crate::eval::{Metrics, evaluate};
use crate::models::{Ease, ItemKnn, Popularity, Transitions, input_weights};
use crate::neural;
use crate::recommender::Part;
use crate::train::{TrainOptions, fit};

/// Reads `ratings.csv` (userId,movieId,rating,timestamp); every rating is an interaction.
pub fn load_ratings(path: &Path) -> anyhow::Result<Vec<RawInteraction>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.trim().split(',').collect();
        if f.len() < 4 {
            anyhow::bail!("{}:{}: expected 4 columns", path.display(), n + 1);
        }
        out.push(RawInteraction {
            user: f[0].to_string(),
            item: f[1].to_string(),
            ts: f[3].parse()?,
            weight: 1.0,
        });
    }
    Ok(out)
}

/// One row of the quality table.
#[derive(Debug, Clone)]
pub struct Row {
    pub model: String,
    pub chosen: String,
    pub test: Metrics,
    pub validation_ndcg: Option<f64>,
    pub fit_seconds: f64,
}

/// Runs the protocol and returns the table rows plus the data summary.
pub fn run(path: &Path, log: &mut dyn FnMut(String)) -> anyhow::Result<(Vec<Row>, String)> {
    let raw = load_ratings(path)?;
    let all = Dataset::from_raw(&raw).keep_users_with(5);
    let split = chrono_split(&all, 0.2);
    let train = &split.train;
    let val = chrono_split(train, 0.2);
    let test_users = split.held_out.iter().filter(|h| !h.is_empty()).count();
    let summary = format!(
        "{} interactions, {} users (>= 5 interactions), {} items; test: {} users with {} held-out items in the training catalogue",
        all.n_interactions(),
        all.users.len(),
        all.n_items(),
        test_users,
        split.held_out.iter().map(Vec::len).sum::<usize>()
    );
    log(summary.clone());
    let mut rows = Vec::new();

    // MostPopular
    let t = Instant::now();
    let pop = Popularity::fit(train);
    let fs = t.elapsed().as_secs_f64();
    let m = evaluate(&|_: usize, _: &[Ev], o: &mut [f32]| pop.score(o), &split);
    rows.push(Row {
        model: "MostPopular".into(),
        chosen: "-".into(),
        test: m,
        validation_ndcg: None,
        fit_seconds: fs,
    });
    log(format!("MostPopular {m:?}"));

    // item-kNN cosine k=100
    let t = Instant::now();
    let knn = ItemKnn::fit(train, 100);
    let fs = t.elapsed().as_secs_f64();
    let m = evaluate(
        &|_: usize, h: &[Ev], o: &mut [f32]| knn.score(&input_weights(h, 0.0), o),
        &split,
    );
    rows.push(Row {
        model: "item-kNN (cosine, k=100)".into(),
        chosen: "k=100".into(),
        test: m,
        validation_ndcg: None,
        fit_seconds: fs,
    });
    log(format!("item-kNN {m:?}"));

    // ALS: grid on validation, refit on the training part.
    let mut best: Option<(f64, AlsConfig)> = None;
    for factors in [32usize, 64] {
        for reg in [1.0, 10.0] {
            for alpha in [1.0, 5.0] {
                let cfg = AlsConfig {
                    factors,
                    reg,
                    alpha,
                    iterations: 10,
                    seed: 7,
                };
                let als = Als::fit(&val.train, cfg);
                let m = evaluate(&|_: usize, h: &[Ev], o: &mut [f32]| als.score(h, o), &val);
                log(format!("ALS {cfg:?} validation ndcg@10 {:.4}", m.ndcg10));
                if best.as_ref().is_none_or(|(b, _)| m.ndcg10 > *b) {
                    best = Some((m.ndcg10, cfg));
                }
            }
        }
    }
    if let Some((vn, cfg)) = best {
        let t = Instant::now();
        let als = Als::fit(train, cfg);
        let fs = t.elapsed().as_secs_f64();
        let m = evaluate(&|_: usize, h: &[Ev], o: &mut [f32]| als.score(h, o), &split);
        rows.push(Row {
            model: "ALS (implicit, CG-free exact solves)".into(),
            chosen: format!(
                "factors={} reg={} alpha={} iters={}",
                cfg.factors, cfg.reg, cfg.alpha, cfg.iterations
            ),
            test: m,
            validation_ndcg: Some(vn),
            fit_seconds: fs,
        });
        log(format!("ALS {m:?}"));
    }

    // EASE: lambda on validation, over every item (min_count 1) as in the reference.
    let mut best: Option<(f64, f32)> = None;
    for lambda in [50.0f32, 100.0, 200.0, 400.0, 800.0] {
        let e = Ease::fit(&val.train, lambda, 1)?;
        let m = evaluate(
            &|_: usize, h: &[Ev], o: &mut [f32]| e.score(&input_weights(h, 0.0), o),
            &val,
        );
        log(format!(
            "EASE lambda {lambda} validation ndcg@10 {:.4}",
            m.ndcg10
        ));
        if best.as_ref().is_none_or(|(b, _)| m.ndcg10 > *b) {
            best = Some((m.ndcg10, lambda));
        }
    }
    if let Some((vn, lambda)) = best {
        let t = Instant::now();
        let e = Ease::fit(train, lambda, 1)?;
        let fs = t.elapsed().as_secs_f64();
        let m = evaluate(
            &|_: usize, h: &[Ev], o: &mut [f32]| e.score(&input_weights(h, 0.0), o),
            &split,
        );
        rows.push(Row {
            model: "EASE (all items)".into(),
            chosen: format!("lambda={lambda}"),
            test: m,
            validation_ndcg: Some(vn),
            fit_seconds: fs,
        });
        log(format!("EASE {m:?}"));
    }

    // Transitions and the neural model alone (fixed settings).
    let tr = Transitions::fit(train, 100);
    let m = evaluate(&|_: usize, h: &[Ev], o: &mut [f32]| tr.score(h, o), &split);
    rows.push(Row {
        model: "item transitions (last 10 items)".into(),
        chosen: "window 3, decay 0.8".into(),
        test: m,
        validation_ndcg: None,
        fit_seconds: 0.0,
    });
    let cfg = crate::neural::SeqConfig::default();
    let t = Instant::now();
    let nn = neural::train(train, &cfg, |_, _| {})?;
    let fs = t.elapsed().as_secs_f64();
    let m = evaluate(
        &|_: usize, h: &[Ev], o: &mut [f32]| nn.score(h, 1.0, o),
        &split,
    );
    rows.push(Row {
        model: "neural sequential (candle)".into(),
        chosen: format!(
            "dim={} len={} steps={} batch={}",
            cfg.dim, cfg.max_len, cfg.steps, cfg.batch
        ),
        test: m,
        validation_ndcg: None,
        fit_seconds: fs,
    });
    log(format!("neural {m:?}"));

    // The service's model: what Train does, on the training part only.
    let t = Instant::now();
    let mut progress = |_: &str, _: f64, msg: String| log(msg);
    let fitted = fit(train, &TrainOptions::default(), &mut progress)?;
    let fs = t.elapsed().as_secs_f64();
    let parts = &fitted.parts;
    let b = fitted.blend;
    let m = evaluate(
        &|_: usize, h: &[Ev], o: &mut [f32]| {
            let mut tmp = vec![0f32; o.len()];
            parts.blend(&b, h, o, &mut tmp)
        },
        &split,
    );
    let _ = Part::Ease;
    let mut chosen = String::new();
    let _ = write!(
        chosen,
        "EASE lambda={} (items >= {} users), tau={}, weights ease {} / kNN {} / transitions {} / neural {} / popularity {}",
        fitted.hyper.ease_lambda,
        fitted.hyper.ease_min_count,
        b.tau,
        b.ease,
        b.knn,
        b.trans,
        b.seq,
        b.pop
    );
    for (k, v) in &fitted.validation.components {
        log(format!("validation {k}: ndcg@10 {:.4}", v.ndcg10));
    }
    log(format!("timings {:?}", fitted.validation.seconds));
    rows.push(Row {
        model: "Augur blend (the served model)".into(),
        chosen,
        test: m,
        validation_ndcg: Some(fitted.validation.blend.ndcg10),
        fit_seconds: fs,
    });
    log(format!("blend {m:?}"));
    Ok((rows, summary))
}

/// The rows as a markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| model | NDCG@10 | Recall@10 | Recall@20 | HR@10 | MRR@10 | coverage@10 | val NDCG@10 | fit s | chosen on validation |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let m = &r.test;
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {:.1} | {} |",
            r.model,
            m.ndcg10,
            m.recall10,
            m.recall20,
            m.hr10,
            m.mrr10,
            m.coverage10,
            r.validation_ndcg
                .map(|v| format!("{v:.4}"))
                .unwrap_or("-".into()),
            r.fit_seconds,
            r.chosen
        );
    }
    s
}
