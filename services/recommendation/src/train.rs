//! Training: fit every component on the older part of each history, choose EASE's lambda, the
//! recency setting and the blend weights on the newer part (a chronological validation split
//! carved out of the training data), then refit on all the data with the chosen settings.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::data::{Dataset, Ev, Split, chrono_split};
use crate::eval::{Metrics, evaluate};
use crate::models::{Ease, ItemKnn, Popularity, Transitions, par_map};
use crate::neural;
use crate::recommender::{Blend, Components, Hyper, Part, normalise};

/// What to choose and what is fixed.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub validation_fraction: f64,
    pub hyper: Hyper,
    /// EASE lambdas tried on validation (a fixed lambda is a one-element grid).
    pub lambda_grid: Vec<f32>,
    /// Recency constants tried (0 = none).
    pub tau_grid: Vec<f32>,
    /// Blend weights fixed by the caller (skip the search for them).
    pub fixed_blend: FixedBlend,
    /// Train the neural component at all.
    pub neural: bool,
    /// At most this many validation customers (a deterministic sample).
    pub max_validation_users: usize,
}

/// Per-weight overrides of the blend search.
#[derive(Debug, Clone, Default)]
pub struct FixedBlend {
    pub tau: Option<f32>,
    pub ease: Option<f32>,
    pub knn: Option<f32>,
    pub trans: Option<f32>,
    pub seq: Option<f32>,
    pub pop: Option<f32>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            validation_fraction: 0.2,
            hyper: Hyper::default(),
            lambda_grid: vec![50.0, 200.0, 800.0],
            tau_grid: vec![0.0, 100.0, 30.0, 10.0],
            fixed_blend: FixedBlend::default(),
            neural: true,
            max_validation_users: 3000,
        }
    }
}

/// Validation results: each component alone and the chosen blend.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    pub components: BTreeMap<String, Metrics>,
    pub blend: Metrics,
    pub seconds: BTreeMap<String, f64>,
}

/// The outcome of [`fit`].
#[derive(Debug, Clone)]
pub struct Fitted {
    pub parts: Components,
    pub blend: Blend,
    pub hyper: Hyper,
    pub validation: Validation,
}

/// Progress callback: (stage, fraction done, message).
pub type OnProgress<'a> = dyn FnMut(&str, f64, String) + 'a;

/// Fits every component on `d` with fixed hyper-parameters.
pub fn fit_components(
    d: &Dataset,
    hyper: &Hyper,
    neural_on: bool,
    warm: Option<&neural::SeqModel>,
    progress: &mut OnProgress<'_>,
    base: f64,
    span: f64,
) -> candle_core::Result<Components> {
    let pop = Popularity::fit(d);
    let knn = ItemKnn::fit(d, hyper.knn_k);
    let trans = Transitions::fit(d, hyper.trans_keep);
    progress("training", base + 0.1 * span, "fitting EASE".into());
    let ease = Ease::fit(d, hyper.ease_lambda, hyper.ease_min_count)?;
    let seq = if neural_on {
        // A warm start from the validation fit needs a third of the steps.
        let mut cfg = hyper.seq.clone();
        if warm.is_some() {
            cfg.steps = cfg.steps.div_ceil(3);
        }
        let steps = cfg.steps.max(1);
        Some(neural::train_from(d, &cfg, warm, |s, loss| {
            progress(
                "training",
                base + span * (0.3 + 0.7 * s as f64 / steps as f64),
                format!("neural step {s}/{steps} loss {loss:.3}"),
            )
        })?)
    } else {
        None
    };
    Ok(Components {
        pop,
        knn,
        ease,
        trans,
        seq,
    })
}

/// Normalised scores of one component for each validation user (rows in `users` order).
fn matrix(
    parts: &Components,
    part: Part,
    tau: f32,
    split: &Split,
    users: &[usize],
) -> Vec<Vec<f32>> {
    let n = split.train.n_items();
    par_map(users.len(), |k| {
        let mut v = vec![0f32; n];
        parts.raw(part, &split.train.seqs[users[k]], tau, &mut v);
        normalise(part, &mut v);
        v
    })
}

/// Chooses the hyper-parameters and the blend on a validation split of `d`, then refits on all
/// of `d`.
pub fn fit(
    d: &Dataset,
    opts: &TrainOptions,
    progress: &mut OnProgress<'_>,
) -> candle_core::Result<Fitted> {
    let mut val = Validation::default();
    let t0 = Instant::now();
    let mut split = chrono_split(d, opts.validation_fraction);
    let mut users: Vec<usize> = (0..split.held_out.len())
        .filter(|&u| !split.held_out[u].is_empty() && !split.train.seqs[u].is_empty())
        .collect();
    if users.len() > opts.max_validation_users {
        let step = users.len() as f64 / opts.max_validation_users as f64;
        users = (0..opts.max_validation_users)
            .map(|k| users[(k as f64 * step) as usize])
            .collect();
        let keep: std::collections::HashSet<usize> = users.iter().copied().collect();
        for (u, h) in split.held_out.iter_mut().enumerate() {
            if !keep.contains(&u) {
                h.clear();
            }
        }
    }
    let mut row = vec![usize::MAX; split.held_out.len()];
    for (k, &u) in users.iter().enumerate() {
        row[u] = k;
    }

    progress(
        "training",
        0.02,
        format!("validation split: {} customers", users.len()),
    );
    // EASE lambda: the best EASE alone (no recency) on validation.
    let mut hyper = opts.hyper.clone();
    let mut best_ease: Option<(f64, f32, Ease)> = None;
    for (k, &lambda) in opts.lambda_grid.iter().enumerate() {
        let t = Instant::now();
        let e = Ease::fit(&split.train, lambda, hyper.ease_min_count)?;
        val.seconds
            .insert("ease_fit".into(), t.elapsed().as_secs_f64());
        let m = evaluate(
            &|_: usize, h: &[Ev], out: &mut [f32]| {
                e.score(&crate::models::input_weights(h, 0.0), out)
            },
            &split,
        );
        progress(
            "validating",
            0.05 + 0.2 * (k + 1) as f64 / opts.lambda_grid.len() as f64,
            format!("EASE lambda {lambda}: ndcg@10 {:.4}", m.ndcg10),
        );
        val.components.insert(format!("ease_lambda_{lambda}"), m);
        if best_ease.as_ref().is_none_or(|(b, _, _)| m.ndcg10 > *b) {
            best_ease = Some((m.ndcg10, lambda, e));
        }
    }
    let Some((_, lambda, ease)) = best_ease else {
        return Err(candle_core::Error::Msg("empty lambda grid".into()));
    };
    hyper.ease_lambda = lambda;

    let t = Instant::now();
    let pop = Popularity::fit(&split.train);
    let knn = ItemKnn::fit(&split.train, hyper.knn_k);
    let trans = Transitions::fit(&split.train, hyper.trans_keep);
    val.seconds
        .insert("knn_fit".into(), t.elapsed().as_secs_f64());
    let t = Instant::now();
    let seq = if opts.neural {
        let steps = hyper.seq.steps.max(1);
        Some(neural::train(&split.train, &hyper.seq, |s, loss| {
            progress(
                "training",
                0.25 + 0.25 * s as f64 / steps as f64,
                format!("neural (validation fit) step {s}/{steps} loss {loss:.3}"),
            )
        })?)
    } else {
        None
    };
    val.seconds
        .insert("neural_fit".into(), t.elapsed().as_secs_f64());
    let sub = Components {
        pop,
        knn,
        ease,
        trans,
        seq,
    };

    // Component score matrices on validation users.
    progress("validating", 0.5, "scoring validation customers".into());
    let fixed_tau: Vec<f32> = match opts.fixed_blend.tau {
        Some(t) => vec![t],
        None => opts.tau_grid.clone(),
    };
    let mut ease_m = Vec::new();
    let mut knn_m = Vec::new();
    for &tau in &fixed_tau {
        ease_m.push(matrix(&sub, Part::Ease, tau, &split, &users));
        knn_m.push(matrix(&sub, Part::Knn, tau, &split, &users));
    }
    let trans_m = matrix(&sub, Part::Trans, 0.0, &split, &users);
    let pop_m = matrix(&sub, Part::Pop, 0.0, &split, &users);
    let seq_m = if sub.seq.is_some() {
        matrix(&sub, Part::Seq, 0.0, &split, &users)
    } else {
        Vec::new()
    };
    let eval_blend = |ti: usize, b: &Blend| -> Metrics {
        let f = |u: usize, _: &[Ev], out: &mut [f32]| {
            let r = row[u];
            if r == usize::MAX {
                return;
            }
            for (w, m) in [
                (b.ease, &ease_m[ti]),
                (b.knn, &knn_m[ti]),
                (b.trans, &trans_m),
                (b.seq, &seq_m),
                (b.pop, &pop_m),
            ] {
                if w != 0.0
                    && let Some(v) = m.get(r)
                {
                    for (o, x) in out.iter_mut().zip(v) {
                        *o += w * x;
                    }
                }
            }
        };
        evaluate(&f, &split)
    };
    let alone = |ti: usize, part: Part| {
        let mut b = Blend {
            tau: fixed_tau[ti],
            ease: 0.0,
            ..Blend::default()
        };
        match part {
            Part::Ease => b.ease = 1.0,
            Part::Knn => b.knn = 1.0,
            Part::Trans => b.trans = 1.0,
            Part::Seq => b.seq = 1.0,
            Part::Pop => b.pop = 1.0,
        }
        eval_blend(ti, &b)
    };
    let ti0 = 0;
    val.components
        .insert("popularity".into(), alone(ti0, Part::Pop));
    val.components
        .insert(format!("item_knn_k{}", hyper.knn_k), alone(ti0, Part::Knn));
    val.components.insert("ease".into(), alone(ti0, Part::Ease));
    val.components
        .insert("transitions".into(), alone(ti0, Part::Trans));
    if sub.seq.is_some() {
        val.components
            .insert("neural_seq".into(), alone(ti0, Part::Seq));
    }

    // Coordinate ascent over the blend (two rounds).
    let fb = &opts.fixed_blend;
    let mut best = Blend {
        tau: fixed_tau[0],
        ease: fb.ease.unwrap_or(1.0),
        knn: fb.knn.unwrap_or(0.0),
        trans: fb.trans.unwrap_or(0.0),
        seq: fb.seq.unwrap_or(0.0),
        pop: fb.pop.unwrap_or(0.0),
    };
    let mut best_ti = 0;
    let mut best_m = eval_blend(best_ti, &best);
    let grid = [0.0f32, 0.1, 0.25, 0.5, 1.0, 2.0];
    for round in 0..2 {
        progress(
            "validating",
            0.55 + 0.1 * round as f64,
            format!(
                "blend search round {} ndcg@10 {:.4}",
                round + 1,
                best_m.ndcg10
            ),
        );
        for (ti, &tau) in fixed_tau.iter().enumerate() {
            let mut b = best;
            b.tau = tau;
            let m = eval_blend(ti, &b);
            if m.ndcg10 > best_m.ndcg10 {
                (best, best_ti, best_m) = (b, ti, m);
            }
        }
        for field in 0..5 {
            let fixed = match field {
                0 => fb.ease,
                1 => fb.knn,
                2 => fb.trans,
                3 => {
                    if sub.seq.is_none() {
                        Some(0.0)
                    } else {
                        fb.seq
                    }
                }
                _ => fb.pop,
            };
            if fixed.is_some() {
                continue;
            }
            for &w in &grid {
                let mut b = best;
                match field {
                    0 => b.ease = w,
                    1 => b.knn = w,
                    2 => b.trans = w,
                    3 => b.seq = w,
                    _ => b.pop = w,
                }
                if b.ease + b.knn + b.trans + b.seq + b.pop == 0.0 {
                    continue;
                }
                let m = eval_blend(best_ti, &b);
                if m.ndcg10 > best_m.ndcg10 + 1e-6 {
                    (best, best_m) = (b, m);
                }
            }
        }
    }
    val.blend = best_m;
    val.seconds
        .insert("validation".into(), t0.elapsed().as_secs_f64());
    drop((ease_m, knn_m, trans_m, pop_m, seq_m));

    // Refit on everything with the chosen settings.
    let t = Instant::now();
    progress("training", 0.7, "refitting on all the data".into());
    let neural_on = opts.neural && best.seq != 0.0;
    let parts = fit_components(d, &hyper, neural_on, sub.seq.as_ref(), progress, 0.7, 0.25)?;
    val.seconds
        .insert("refit".into(), t.elapsed().as_secs_f64());
    Ok(Fitted {
        parts,
        blend: best,
        hyper,
        validation: val,
    })
}
