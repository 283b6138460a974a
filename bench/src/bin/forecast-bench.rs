//! Demand-forecast benchmark: quality on M3 monthly and Dominick's orange juice (our anchors and
//! the trained model, test parts never seen in training or model selection), speed of fitting and
//! forecasting all M3 series, and Forecast latency over loopback gRPC. Prints a Markdown report
//! (see BENCHMARKS.md for the protocol). `FORECAST_DUMP=<file>` also writes every Dominick's
//! forecast point of the trained model (with its covariates and the anchors' forecasts) as CSV,
//! for diagnostics; use it with `--nested` to stay off the test weeks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use augur_demand_forecast::metrics::{Pooled, mase, naive_scale, smape};
use augur_demand_forecast::model::{self, SeriesIn, TrainOptions};
use augur_demand_forecast::stats::{self, Method};
use augur_demand_forecast::{arima, datasets};
use augur_proto::forecast as pb;
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Skip the gRPC latency measurement.
    #[arg(long)]
    no_latency: bool,
    /// Forecast calls in the latency measurement.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Only these parts (m3, dominicks, demo, latency; `mixed` only when named); empty means all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Training hyper-parameter overrides as key=value (ridge, window, max_members, members, mase_weight,
    /// grid, windows, gru, gru_epochs, gru_adjusted, gbm, gbm_trees, gbm_rows, gbm_leaves,
    /// gbm_l1, gbm_promo, gbm_prev, gbm_direct, gbm_categorical, gbm_statics, interval_log,
    /// interval_own, direct_blend, direct_quiet, arima).
    #[arg(long, value_delimiter = ',')]
    hp: Vec<String>,
    /// Hyper-parameters of the demo's Train request as key=value, in the service's names
    /// (e.g. `blend.direct=false`).
    #[arg(long, value_delimiter = ',')]
    demo_hp: Vec<String>,
    /// Never read the test parts: drop them, and score on the last horizon of each training part
    /// instead (M3: the last 18 points of `x`; Dominick's: the 12 weeks before the test weeks).
    /// For comparing settings of the model without looking at the test figures.
    #[arg(long)]
    nested: bool,
    /// With `--nested`: how many horizons to drop (2 scores on the horizon before the nested
    /// one: a second origin for comparing settings).
    #[arg(long, default_value_t = 1)]
    nested_depth: usize,
    /// Dominick's: skip the AutoARIMA and boosted-trees anchors (minutes), for comparing
    /// settings of the trained model.
    #[arg(long)]
    skip_anchors: bool,
    /// Dominick's: give the trained model the same store's other brands' prices and promotions
    /// of every week as known covariates too (beyond the issue's own price, deal and feat; see
    /// BENCHMARKS.md, "Other brands' prices and promotions"): `all`, or some of xb_rel,
    /// xb_min, xb_deal, xb_feat.
    #[arg(long, value_delimiter = ',')]
    cross_brand: Vec<String>,
}

/// The training options with `--hp` applied; a bad value or an unknown key is an error naming
/// it (a typo must not quietly benchmark the defaults).
fn options(args: &Args, horizon: usize) -> anyhow::Result<TrainOptions> {
    fn parse<T: std::str::FromStr>(k: &str, v: &str) -> anyhow::Result<T> {
        v.parse()
            .map_err(|_| anyhow::anyhow!("--hp {k}={v:?}: cannot parse the value"))
    }
    let mut o = TrainOptions {
        horizon,
        ..Default::default()
    };
    for kv in &args.hp {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "ridge" => o.ridge = parse(k, v)?,
            "window" => o.window = parse(k, v)?,
            "max_members" => o.max_members = parse(k, v)?,
            // Members the search may use, e.g. `members=ses+global_gbm`.
            "members" => {
                o.members = 0;
                for name in v.split('+') {
                    let m = stats::METHODS
                        .iter()
                        .find(|m| m.name() == name)
                        .ok_or_else(|| anyhow::anyhow!("--hp members: unknown member {name:?}"))?;
                    o.members |= 1 << *m as u32;
                }
            }
            "mase_weight" => o.mase_weight = parse(k, v)?,
            "grid" => o.grid = parse(k, v)?,
            "windows" => o.windows = parse(k, v)?,
            "gru" => o.gru = parse(k, v)?,
            "gru_epochs" => o.gru_epochs = parse(k, v)?,
            "gru_adjusted" => o.gru_adjusted = parse(k, v)?,
            "gbm" => o.gbm = parse(k, v)?,
            "gbm_trees" => o.gbm_trees = parse(k, v)?,
            "gbm_rows" => o.gbm_rows = parse(k, v)?,
            "gbm_leaves" => o.gbm_leaves = parse(k, v)?,
            "gbm_l1" => o.gbm_l1 = parse(k, v)?,
            "gbm_promo" => o.gbm_promo = parse(k, v)?,
            "gbm_prev" => o.gbm_prev = parse(k, v)?,
            "gbm_direct" => o.gbm_direct = parse(k, v)?,
            "gbm_categorical" => o.gbm_categorical = parse(k, v)?,
            "gbm_statics" => o.gbm_statics = parse(k, v)?,
            "interval_log" => o.interval_log = parse(k, v)?,
            "interval_own" => o.interval_own = parse(k, v)?,
            "direct_blend" => o.direct_blend = parse(k, v)?,
            "direct_quiet" => o.direct_quiet = parse(k, v)?,
            "arima" => o.arima = parse(k, v)?,
            _ => anyhow::bail!("--hp {k}: unknown hyper-parameter"),
        }
    }
    Ok(o)
}

/// Accumulates per-series sMAPE / MASE / MSIS and pooled WAPE / coverage.
#[derive(Default)]
struct Score {
    smape: f64,
    mase: f64,
    /// Sum over series of the 80% interval's scaled interval score (same scale as MASE).
    msis: f64,
    n: usize,
    pooled: Pooled,
    has_interval: bool,
}

impl Score {
    fn add(&mut self, y: &[f64], f: &[f64], scale: f64, interval: Option<(&[f64], &[f64])>) {
        self.smape += smape(y, f);
        self.mase += mase(y, f, scale);
        self.n += 1;
        match interval {
            Some((lo, hi)) => {
                self.has_interval = true;
                self.pooled.add(y, f, lo, hi);
                self.msis += augur_demand_forecast::metrics::msis(y, lo, hi, 0.2, scale);
            }
            None => self.pooled.add(y, f, f, f),
        }
    }
    fn row(&self, name: &str, secs: Option<f64>) -> String {
        let n = self.n.max(1) as f64;
        format!(
            "| {name} | {:.2} | {:.3} | {:.3} | {} | {} |",
            self.smape / n,
            self.mase / n,
            self.pooled.wape(),
            if self.has_interval {
                format!(
                    "{:.1}% (MSIS {:.2})",
                    100.0 * self.pooled.coverage(),
                    self.msis / n
                )
            } else {
                "-".into()
            },
            secs.map_or("-".into(), |s| format!("{s:.1}")),
        )
    }
}

/// What the service saves of `model` besides the GRU's safetensors (`model.json`): its size,
/// and the time to write it and to read it back (a replica's load on hot swap).
fn saved(model: &model::Model) -> anyhow::Result<String> {
    let t0 = Instant::now();
    let json = serde_json::to_vec(model)?;
    let write_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t0 = Instant::now();
    let back: model::Model = serde_json::from_slice(&json)?;
    let read_ms = t0.elapsed().as_secs_f64() * 1e3;
    let trees = back.gbm.as_ref().map_or((0, 0), |g| {
        (
            g.trees.trees.len(),
            g.direct.iter().map(|d| d.trees.len()).sum::<usize>(),
        )
    });
    Ok(format!(
        "Saved model (`model.json`, without the GRU's safetensors): {:.1} MB ({} boosted trees, {} direct trees), written in {write_ms:.0} ms, read back in {read_ms:.0} ms.",
        json.len() as f64 / 1e6,
        trees.0,
        trees.1
    ))
}

/// The table row's name of the trained model: its combination, and the blend when served.
fn trained_name(prefix: &str, model: &model::Model) -> String {
    format!(
        "**trained: {prefix}{}{}**",
        stats::combo_name(model.combo),
        if model.direct_blend {
            format!(
                ", blended with the direct trees ({} in promotion weeks, {} in others)",
                model::DIRECT_PROMO,
                model.direct_quiet
            )
        } else {
            String::new()
        }
    )
}

fn header() {
    println!("| method | sMAPE % | MASE | WAPE | 80% coverage | seconds |");
    println!("|---|---|---|---|---|---|");
}

fn m3(args: &Args, dir: &std::path::Path) -> anyhow::Result<()> {
    let data = datasets::m3_monthly(&dir.join("m3/m3_monthly.json"))?;
    let h = 18;
    let data: Vec<datasets::M3Series> = if args.nested {
        println!("\n(nested: the test parts are dropped; scored on the last {h} points of each x)");
        datasets::m3_nested(&data, h)
    } else {
        data
    };
    println!("\n## M3 monthly: {} series, horizon {h}\n", data.len());
    header();
    // Anchors: the members, each fitted and forecast from `x` alone.
    let t0 = Instant::now();
    let all: Vec<Vec<Vec<f64>>> = data
        .iter()
        .map(|s| stats::all_forecasts(&s.x, 12, h))
        .collect();
    let members_secs = t0.elapsed().as_secs_f64();
    for m in [
        Method::Naive,
        Method::SeasonalNaive,
        Method::Naive2,
        Method::Ses,
        Method::Damped,
        Method::Ets,
        Method::Theta,
        Method::AutoEts,
        Method::Dotm,
        Method::AutoTheta,
    ] {
        let mut sc = Score::default();
        for (s, f) in data.iter().zip(&all) {
            sc.add(&s.xx, &f[m as usize], naive_scale(&s.x, 12), None);
        }
        let name = match m {
            Method::AutoEts => "auto_ets: AutoETS (state space, AICc over the family)",
            Method::Dotm => "dotm: dynamic optimised Theta (seasonally adjusted)",
            Method::AutoTheta => "auto_theta: best of STM / OTM / DSTM / DOTM by in-sample MSE",
            _ => m.name(),
        };
        println!("{}", sc.row(name, None));
    }
    // AutoETS alone (it is part of the member time above).
    let t0 = Instant::now();
    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    for s in &data {
        let code = augur_demand_forecast::ets::auto(&s.x, 12, &Default::default())
            .map_or_else(|| "none".to_string(), |f| f.spec.code());
        *chosen.entry(code).or_default() += 1;
    }
    let auto_secs = t0.elapsed().as_secs_f64();
    // The trained model: validation = the last 18 points of `x`; test = `xx`.
    let inputs: Vec<SeriesIn> = data.iter().map(datasets::M3Series::input).collect();
    let t0 = Instant::now();
    let trained = model::train(&inputs, &options(args, h)?);
    let train_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let none = BTreeMap::new();
    let outs: Vec<model::Output> = inputs
        .iter()
        .map(|s| trained.model.forecast(s, &none, h, &[0.1, 0.9]))
        .collect();
    let fc_secs = t0.elapsed().as_secs_f64();
    let mut sc = Score::default();
    for (s, o) in data.iter().zip(&outs) {
        sc.add(
            &s.xx,
            &o.point,
            naive_scale(&s.x, 12),
            Some((&o.quantiles[0], &o.quantiles[1])),
        );
    }
    let name = trained_name("", &trained.model);
    println!("{}", sc.row(&name, Some(fc_secs)));
    println!(
        "\nAutoETS alone (fit of the whole family + AICc choice, all series) {auto_secs:.1} s; models chosen: {chosen:?}.\nFit + forecast of all {} series: every member model {members_secs:.1} s; trained model: training (combination choice on validation windows, interval calibration) {train_secs:.1} s, then fit + forecast {fc_secs:.1} s. Validation (last 18 points of x): {:?}",
        data.len(),
        trained.validation
    );
    println!("{}", saved(&trained.model)?);
    Ok(())
}

/// Per-series OLS of log units on log price, deal and feat (with intercept).
fn regression_anchor(s: &datasets::OjSeries, n: usize, h: usize) -> Vec<f64> {
    let row = |t: usize| [1.0, s.price[t].max(1e-9).ln(), s.deal[t], s.feat[t]];
    let p = 4;
    let mut xtx = vec![0.0; p * p];
    let mut xty = vec![0.0; p];
    for t in 0..n {
        let x = row(t);
        let y = s.units[t].ln();
        for i in 0..p {
            xty[i] += x[i] * y;
            for j in 0..p {
                xtx[i * p + j] += x[i] * x[j];
            }
        }
    }
    for i in 1..p {
        xtx[i * p + i] += 1e-3;
    }
    let beta = model::solve(xtx, xty, p).unwrap_or(vec![0.0; p]);
    (n..n + h)
        .map(|t| {
            let x = row(t);
            (0..p).map(|i| beta[i] * x[i]).sum::<f64>().exp()
        })
        .collect()
}

/// The AutoARIMA-with-regressors anchor from our own code: log units with ARIMA errors
/// on log price, deal and feat ([`arima::auto`]: KPSS for d, stepwise AICc over p, q <= 5, CSS
/// estimation), forecast with the known regressors of the horizon, back to units. One series per
/// call; `None` when the search finds no model (the caller falls back to the last value).
fn arima_anchor(s: &datasets::OjSeries, n: usize, h: usize) -> Option<Vec<f64>> {
    let y: Vec<f64> = s.units[..n].iter().map(|v| v.ln()).collect();
    let cols = |a: usize, b: usize| -> Vec<Vec<f64>> {
        vec![
            s.price[a..b].iter().map(|v| v.max(1e-9).ln()).collect(),
            s.deal[a..b].to_vec(),
            s.feat[a..b].to_vec(),
        ]
    };
    let fit = arima::auto(&y, &cols(0, n), &arima::AutoOptions::default())?;
    Some(
        fit.forecast(&cols(n, n + h), h)
            .into_iter()
            .map(|v| v.min(700.0).exp())
            .collect(),
    )
}

/// The global LightGBM anchor from our own code (`augur_model::gbdt`, LightGBM's default
/// settings as far as our trees have them: 100 trees, learning rate 0.1, 31 leaves grown
/// best-first (leaf-wise) without a depth limit, 20 rows per leaf, 255 bins, no row
/// sampling): one model per horizon step j over
/// every series and every origin t0 of the training part, target log units at t0 + j, features
/// the last 8 log units before t0, log price, deal and feat of the target week, store and
/// brand codes (with `categorical`, split as categories, as LightGBM does with pandas category
/// columns; otherwise as numbers).
fn gbm_anchor(data: &[datasets::OjSeries], h: usize, categorical: bool) -> Vec<Vec<f64>> {
    use augur_model::gbdt::{Gbdt, GbdtParams};
    const LAGS: usize = 8;
    let code = |v: &str| v.parse::<f32>().unwrap_or(-1.0);
    let feats = |s: &datasets::OjSeries, t0: usize, t: usize, out: &mut Vec<f32>| {
        out.clear();
        for i in 1..=LAGS {
            out.push(s.units[t0 - i].ln() as f32);
        }
        out.push(s.price[t].max(1e-9).ln() as f32);
        out.push(s.deal[t] as f32);
        out.push(s.feat[t] as f32);
        out.push(code(&s.store));
        out.push(code(&s.brand));
    };
    let params = GbdtParams {
        trees: 100,
        depth: 64,
        learning_rate: 0.1,
        min_leaf: 20,
        l2: 0.0,
        bins: 255,
        subsample: 1.0,
        seed: 42,
        leaves: 31,
    };
    let mut out: Vec<Vec<f64>> = data.iter().map(|_| vec![0.0; h]).collect();
    let mut row = Vec::new();
    for j in 0..h {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for s in data {
            let n = s.units.len() - h;
            for t0 in LAGS..n.saturating_sub(j) {
                feats(s, t0, t0 + j, &mut row);
                x.push(row.clone());
                y.push(s.units[t0 + j].ln() as f32);
            }
        }
        let cat: &[usize] = if categorical {
            &[LAGS + 3, LAGS + 4]
        } else {
            &[]
        };
        let model = Gbdt::fit_regression(&x, &y, &params, false, cat);
        for (s, o) in data.iter().zip(out.iter_mut()) {
            let n = s.units.len() - h;
            feats(s, n, n + j, &mut row);
            o[j] = f64::from(model.margin(&row)).exp();
        }
    }
    out
}

/// The AutoARIMA and global boosted-trees anchors on Dominick's (their rows printed): their
/// forecasts: AutoARIMA's, the boosted trees' with store and brand as numbers and with them as
/// categories.
fn anchors(data: &[datasets::OjSeries], h: usize) -> [Vec<Vec<f64>>; 3] {
    // AutoARIMA with regressors, the series split over the cores.
    let t0 = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let chunk = data.len().div_ceil(threads.max(1)).max(1);
    let arima_fc: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = data
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|s| {
                            let n = s.units.len() - h;
                            arima_anchor(s, n, h).unwrap_or_else(|| vec![s.units[n - 1]; h])
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    });
    let arima_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let gbm_fc = gbm_anchor(data, h, false);
    let gbm_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let cat_fc = gbm_anchor(data, h, true);
    let cat_secs = t0.elapsed().as_secs_f64();
    let mut arima_sc = Score::default();
    let mut gbm_sc = Score::default();
    let mut cat_sc = Score::default();
    for (((s, a), g), c) in data.iter().zip(&arima_fc).zip(&gbm_fc).zip(&cat_fc) {
        let n = s.units.len() - h;
        let scale = naive_scale(&s.units[..n], 1);
        arima_sc.add(&s.units[n..], a, scale, None);
        gbm_sc.add(&s.units[n..], g, scale, None);
        cat_sc.add(&s.units[n..], c, scale, None);
    }
    println!(
        "{}",
        arima_sc.row(
            "AutoARIMA on log units, regressors log price + deal + feat (CSS, stepwise AICc)",
            Some(arima_secs)
        )
    );
    println!(
        "{}",
        gbm_sc.row(
            "global boosted trees, one model per step: 8 lags + price/deal/feat + store/brand",
            Some(gbm_secs)
        )
    );
    println!(
        "{}",
        cat_sc.row(
            "the same boosted trees with store and brand split as categories",
            Some(cat_secs)
        )
    );
    [arima_fc, gbm_fc, cat_fc]
}

fn dominicks(args: &Args, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut data = datasets::dominicks(&dir.join("dominicks/oj_yx.csv"))?;
    // The stores' demographics: static, so known in advance; the global trees read them.
    let demo = dir.join("dominicks/oj_storedemo.csv");
    match datasets::add_store_demographics(&demo, &mut data) {
        Ok(n) => println!(
            "store demographics: {n} stores from {} ({} of {} series described)",
            demo.display(),
            data.iter().filter(|s| !s.demographics.is_empty()).count(),
            data.len()
        ),
        Err(e) => eprintln!(
            "WARNING: no store demographics ({}: {e}); the models train without them",
            demo.display()
        ),
    }
    if !args.cross_brand.is_empty() {
        datasets::add_cross_brand(&dir.join("dominicks/oj_yx.csv"), &mut data)?;
        if let Some(bad) = args
            .cross_brand
            .iter()
            .find(|n| *n != "all" && !datasets::CROSS_BRAND.contains(&n.as_str()))
        {
            anyhow::bail!(
                "--cross-brand {bad}: not one of all, {}",
                datasets::CROSS_BRAND.join(", ")
            );
        }
        if !args.cross_brand.iter().any(|n| n == "all") {
            for s in &mut data {
                s.extra.retain(|k, _| args.cross_brand.contains(k));
            }
        }
        let kept = data
            .first()
            .map(|s| s.extra.keys().cloned().collect::<Vec<_>>());
        println!(
            "cross-brand covariates: {} (the store's other brands, every week)",
            kept.unwrap_or_default().join(", ")
        );
    }
    let h = 12;
    let data: Vec<_> = if args.nested {
        let drop = h * args.nested_depth.max(1);
        println!(
            "\n(nested: the last {drop} weeks (the test weeks and before) are dropped; scored on the {h} weeks before them)"
        );
        data.into_iter()
            .filter(|s| s.units.len() > drop)
            .map(|s| s.truncated(s.units.len() - drop))
            .collect()
    } else {
        data
    };
    let data: Vec<_> = data.into_iter().filter(|s| s.units.len() > h + 8).collect();
    println!(
        "\n## Dominick's orange juice: {} store x brand series, last {h} weeks held out\n",
        data.len()
    );
    header();
    let mut naive = Score::default();
    let mut ets_log = Score::default();
    let mut reg = Score::default();
    for s in &data {
        let n = s.units.len() - h;
        let y = &s.units[n..];
        let scale = naive_scale(&s.units[..n], 1);
        naive.add(y, &vec![s.units[n - 1]; h], scale, None);
        let logs: Vec<f64> = s.units[..n].iter().map(|v| v.ln()).collect();
        let f: Vec<f64> = stats::all_forecasts(&logs, 1, h)[Method::Ets as usize]
            .iter()
            .map(|v| v.exp())
            .collect();
        ets_log.add(y, &f, scale, None);
        reg.add(y, &regression_anchor(s, n, h), scale, None);
    }
    println!("{}", naive.row("naive", None));
    println!("{}", ets_log.row("ETS on log units", None));
    println!(
        "{}",
        reg.row(
            "regression per series: log units ~ log price + deal + feat",
            None
        )
    );
    // The anchors' forecasts (NaN when skipped).
    let [arima_fc, gbm_fc, cat_fc] = if args.skip_anchors {
        println!("| *(AutoARIMA and boosted-trees anchors skipped: `--skip-anchors`)* | | | | |");
        let none: Vec<Vec<f64>> = data.iter().map(|_| vec![f64::NAN; h]).collect();
        [none.clone(), none.clone(), none]
    } else {
        anchors(&data, h)
    };
    let inputs: Vec<SeriesIn> = data.iter().map(|s| s.input(s.units.len() - h)).collect();
    let t0 = Instant::now();
    let trained = model::train(&inputs, &options(args, h)?);
    let train_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut sc = Score::default();
    let mut outs = Vec::with_capacity(data.len());
    for (s, inp) in data.iter().zip(&inputs) {
        let n = s.units.len() - h;
        let o = trained
            .model
            .forecast(inp, &s.future(n, n + h), h, &[0.1, 0.9]);
        sc.add(
            &s.units[n..],
            &o.point,
            naive_scale(&s.units[..n], 1),
            Some((&o.quantiles[0], &o.quantiles[1])),
        );
        outs.push(o);
    }
    let fc_secs = t0.elapsed().as_secs_f64();
    // Diagnostics: every forecast point with its covariates and the anchors' forecasts, as CSV.
    if let Ok(path) = std::env::var("FORECAST_DUMP") {
        use std::fmt::Write as _;
        let mut out = String::from(
            "store,brand,step,actual,point,q10,q90,price,deal,feat,scale,arima,gbm_anchor,gbm_anchor_cat,regression",
        );
        // Every member's forecast too (column `m_<member>`), for diagnostics of the combination.
        for m in augur_demand_forecast::stats::METHODS {
            let _ = write!(out, ",m_{}", m.name());
        }
        // And the chosen combination before the blend with the direct trees.
        out.push_str(",combination\n");
        for (((((s, inp), o), a), g), c) in data
            .iter()
            .zip(&inputs)
            .zip(&outs)
            .zip(&arima_fc)
            .zip(&gbm_fc)
            .zip(&cat_fc)
        {
            let n = s.units.len() - h;
            let r = regression_anchor(s, n, h);
            let scale = naive_scale(&s.units[..n], 1);
            let members = trained.model.member_forecasts(inp, &s.future(n, n + h), h);
            let combination = augur_demand_forecast::stats::combine(
                &members,
                trained.model.combo_for(inp.season),
                true,
            );
            for j in 0..h {
                let _ = write!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    s.store,
                    s.brand,
                    j,
                    s.units[n + j],
                    o.point[j],
                    o.quantiles[0][j],
                    o.quantiles[1][j],
                    s.price[n + j],
                    s.deal[n + j],
                    s.feat[n + j],
                    scale,
                    a[j],
                    g[j],
                    c[j],
                    r[j]
                );
                for m in &members {
                    let _ = write!(out, ",{}", m[j]);
                }
                let _ = writeln!(out, ",{}", combination[j]);
            }
        }
        std::fs::write(&path, out)?;
        println!("(forecasts written to {path})");
    }
    let name = trained_name("covariates + ", &trained.model);
    println!("{}", sc.row(&name, Some(train_secs + fc_secs)));
    println!(
        "\nTraining {train_secs:.1} s, forecast {fc_secs:.1} s. Chosen on validation: ridge {}, window {}, lagged covariates {}, log scale {}. Validation (last {h} weeks of the training part): {:?}",
        trained.ridge, trained.window, trained.lags, trained.model.log, trained.validation
    );
    println!("{}", saved(&trained.model)?);
    Ok(())
}

async fn latency(calls: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = augur_demand_forecast::default_config();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.data_dir = dir.path().to_path_buf();
    let server = augur_demand_forecast::build(&config).spawn().await?;
    let channel = augur_runtime::client::lazy_channel(&server.url(), Duration::from_secs(10))?;
    let mut client = pb::demand_forecast_client::DemandForecastClient::new(channel);
    let series: Vec<f64> = (0..120)
        .map(|t| {
            100.0
                + t as f64
                + 15.0 * ((t % 12) as f64 * std::f64::consts::FRAC_PI_6).sin()
                + (t * 7 % 5) as f64
        })
        .collect();
    let inline = |values: Vec<f64>| pb::SeriesInput {
        id: "s".into(),
        source: Some(pb::series_input::Source::Inline(pb::InlineSeries {
            values,
            frequency: pb::Frequency::Month as i32,
            ..Default::default()
        })),
        ..Default::default()
    };
    // Train on a few inline series so that a model serves.
    let mut stream = client
        .train(pb::TrainRequest {
            source: Some(pb::train_request::Source::Inline(pb::InlineSeriesSet {
                series: (0..20)
                    .map(|k| pb::InlineSeries {
                        values: series.iter().map(|v| v * (1.0 + k as f64 / 10.0)).collect(),
                        frequency: pb::Frequency::Month as i32,
                        ..Default::default()
                    })
                    .collect(),
            })),
            horizon: 18,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut combination = String::from("?");
    while let Some(p) = stream.message().await? {
        if let Some(c) = p
            .model
            .as_ref()
            .and_then(|m| m.parameters.get("combination"))
        {
            combination = c.clone();
        }
    }
    let req = pb::ForecastRequest {
        series: vec![inline(series.clone())],
        horizon: 18,
        ..Default::default()
    };
    for _ in 0..100 {
        client.forecast(req.clone()).await?;
    }
    let mut lat = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t0 = Instant::now();
        client.forecast(req.clone()).await?;
        lat.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
    println!(
        "\n## Forecast latency over loopback gRPC (one inline series, 120 points, horizon 18)\n"
    );
    println!("| calls | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    println!(
        "| {calls} | {:.2} | {:.2} | {:.2} | {:.2} |",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    println!("\nServed combination (trained on 20 scaled copies of the series): {combination}");
    server.shutdown().await?;
    Ok(())
}

/// The default Train of `augur up --demo`: the demo dataset in an in-process feature store, then
/// a Train request with every field empty.
async fn demo(demo_hp: &[String]) -> anyhow::Result<()> {
    use augur_proto::featurestore as fpb;
    use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
    let dir = tempfile::tempdir()?;
    let fs_config = augur_feature_store::Config {
        server: augur_runtime::ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout_ms: 120_000,
            ..augur_runtime::ServerConfig::default()
        },
        data_dir: dir.path().join("fs"),
        hash_key: augur_runtime::Secret::new("benchmark-hash-key-000000"),
        sqlite_synchronous: "normal".into(),
        ..augur_feature_store::Config::default()
    };
    let (fs_server, _app) = augur_feature_store::build(&fs_config).await?;
    let fs_handle = fs_server.spawn().await?;
    let mut fs = FeatureStoreClient::connect(fs_handle.url()).await?;
    let data = augur_demo::generate(&augur_demo::DemoConfig::default());
    for chunk in data.events.chunks(5_000) {
        fs.ingest(fpb::IngestRequest {
            events: chunk.to_vec(),
        })
        .await?;
    }
    let mut config = augur_demand_forecast::default_config();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.data_dir = dir.path().join("fc");
    config.feature_store_url = fs_handle.url();
    let server = augur_demand_forecast::build(&config).spawn().await?;
    let channel = augur_runtime::client::lazy_channel(&server.url(), Duration::from_secs(600))?;
    let mut client = pb::demand_forecast_client::DemandForecastClient::new(channel);
    let t0 = Instant::now();
    let mut stream = client
        .train(pb::TrainRequest {
            hyperparameters: demo_hp
                .iter()
                .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(p) = stream.message().await? {
        last = Some(p);
    }
    let secs = t0.elapsed().as_secs_f64();
    let info = last.and_then(|p| p.model).unwrap_or_default();
    println!(
        "\n## Demo data: default Train (every SKU by day)\n\n{} events; Train {secs:.1} s; parameters {:?}; validation {:?}",
        data.events.len(),
        info.parameters,
        info.validation_metrics
    );
    // A promoted SKU: the forecast with a promotion in every period vs none.
    if let Some(p) = data.summary.promotions.first() {
        let series = |v: f64| pb::SeriesInput {
            source: Some(pb::series_input::Source::FeatureStore(pb::SeriesKey {
                sku: p.sku.clone(),
                ..Default::default()
            })),
            future_covariates: BTreeMap::from([(
                "promotion".to_string(),
                pb::Covariate {
                    values: vec![v; 28],
                },
            )])
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let r = client
            .forecast(pb::ForecastRequest {
                series: vec![series(1.0), series(0.0)],
                horizon: 28,
                ..Default::default()
            })
            .await?
            .into_inner();
        let sum = |f: &pb::SeriesForecast| f.points.iter().map(|p| p.point).sum::<f64>();
        println!(
            "SKU {} over 28 days: {:.1} units with a promotion every day, {:.1} without ({})",
            p.sku,
            sum(&r.forecasts[0]),
            sum(&r.forecasts[1]),
            r.forecasts[0].method
        );
    }
    m3_on_demo_model(&mut client, &info.parameters).await?;
    server.shutdown().await?;
    fs_handle.shutdown().await?;
    Ok(())
}

/// What a caller gets for series unlike the training data: the M3 monthly series sent inline
/// (season 12) to the model trained on the daily demo data (season 7), scored on their test
/// parts; beside it, what the daily winner would have given them (the same serving code with the
/// trained combination, computed in process).
async fn m3_on_demo_model(
    client: &mut pb::demand_forecast_client::DemandForecastClient<tonic::transport::Channel>,
    params: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let path = augur_testkit::datasets::dir().join("m3/m3_monthly.json");
    if !path.is_file() {
        println!(
            "
*** M3 dataset not found at {}: the unseen-frequency check is skipped ***",
            path.display()
        );
        return Ok(());
    }
    let data = datasets::m3_monthly(&path)?;
    let h = 18;
    let mut sc = Score::default();
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    for chunk in data.chunks(200) {
        let r = client
            .forecast(pb::ForecastRequest {
                series: chunk
                    .iter()
                    .map(|s| pb::SeriesInput {
                        id: s.id.clone(),
                        source: Some(pb::series_input::Source::Inline(pb::InlineSeries {
                            values: s.x.clone(),
                            frequency: pb::Frequency::Month as i32,
                            ..Default::default()
                        })),
                        ..Default::default()
                    })
                    .collect(),
                horizon: h as u32,
                // The 80% interval's bounds.
                quantiles: vec![0.1, 0.9],
                ..Default::default()
            })
            .await?
            .into_inner();
        // Answers come in request order.
        for (s, f) in chunk.iter().zip(r.forecasts) {
            *methods.entry(f.method.clone()).or_default() += 1;
            let points: Vec<f64> = f.points.iter().map(|p| p.point).collect();
            let q = |k: usize| -> Vec<f64> {
                f.points
                    .iter()
                    .map(|p| p.quantiles.get(k).map_or(f64::NAN, |q| q.value))
                    .collect()
            };
            sc.add(&s.xx, &points, naive_scale(&s.x, 12), Some((&q(0), &q(1))));
        }
    }
    let n = sc.n.max(1) as f64;
    println!(
        "
M3 monthly sent inline to the demo-trained model (horizon {h}, scored on `xx`): sMAPE {:.2} / MASE {:.3}; 80% interval coverage {:.1}% / MSIS {:.2}; methods {methods:?}",
        sc.smape / n,
        sc.mase / n,
        100.0 * sc.pooled.coverage(),
        sc.msis / n
    );
    // The trained (daily) combination applied to the same series, as before the fallback.
    let combination = params.get("combination").cloned().unwrap_or_default();
    let mask = combination.split('+').try_fold(0u32, |acc, name| {
        stats::METHODS
            .iter()
            .find(|m| m.name() == name && **m != Method::Gru && **m != Method::Gbm)
            .map(|m| acc | (1 << *m as u32))
    });
    match mask {
        Some(combo) if combo != 0 => {
            let m = model::Model {
                horizon: h,
                combo,
                err_q: vec![vec![0.0; model::GRID]; h],
                cov: None,
                log: params.get("log_scale").is_some_and(|v| v == "true"),
                gru_shape: None,
                gru: None,
                seasons: Vec::new(),
                season_combos: BTreeMap::new(),
                season_err_q: BTreeMap::new(),
                gbm: None,
                interval_log: false,
                own_q: Vec::new(),
                season_own_q: BTreeMap::new(),
                direct_blend: false,
                direct_quiet: 0.5,
            };
            let mut old = Score::default();
            for s in &data {
                let f = m.forecast(&s.input(), &BTreeMap::new(), h, &[0.5]).point;
                old.add(&s.xx, &f, naive_scale(&s.x, 12), None);
            }
            let (s_old, m_old) = (old.smape / n, old.mase / n);
            println!(
                "the demo's trained combination ({combination}) on the same series would give sMAPE {s_old:.2} / MASE {m_old:.3}"
            );
        }
        _ => println!(
            "the demo's trained combination ({combination}) is not computed in process here"
        ),
    }
    Ok(())
}

/// `--only mixed`: one Train over M3 monthly (season 12) and Dominick's units (weekly, no season,
/// covariates left out) together, horizon 12; each set scored on its first 12 test points with the
/// per-season combinations and interval quantiles, and with the one combination and the pooled
/// quantiles chosen over both.
fn mixed(args: &Args, dir: &std::path::Path) -> anyhow::Result<()> {
    let h = 12;
    let m3 = datasets::m3_monthly(&dir.join("m3/m3_monthly.json"))?;
    let oj: Vec<_> = datasets::dominicks(&dir.join("dominicks/oj_yx.csv"))?
        .into_iter()
        .filter(|s| s.units.len() > h + 8)
        .collect();
    let mut inputs: Vec<SeriesIn> = m3.iter().map(datasets::M3Series::input).collect();
    inputs.extend(oj.iter().map(|s| SeriesIn {
        values: s.units[..s.units.len() - h].to_vec(),
        season: 1,
        ..Default::default()
    }));
    let t0 = Instant::now();
    let trained = model::train(&inputs, &options(args, h)?);
    let train_secs = t0.elapsed().as_secs_f64();
    let per_season = &trained.model;
    let mut single = per_season.clone();
    single.season_combos.clear();
    single.season_err_q.clear();
    single.season_own_q.clear();
    let name = augur_demand_forecast::stats::combo_name;
    println!(
        "\n## Mixed Train: {} M3 monthly + {} Dominick's series (no covariates), horizon {h}, trained in {train_secs:.1} s\n",
        m3.len(),
        oj.len()
    );
    println!(
        "One combination over both: {}; per season: {:?}\n",
        name(per_season.combo),
        per_season
            .season_combos
            .iter()
            .map(|(k, c)| (*k, name(*c)))
            .collect::<Vec<_>>()
    );
    header();
    let none = BTreeMap::new();
    for (label, model) in [("per-season", per_season), ("one combination", &single)] {
        let mut sc = Score::default();
        for (s, inp) in m3.iter().zip(&inputs) {
            let o = model.forecast(inp, &none, h, &[0.1, 0.9]);
            sc.add(
                &s.xx[..h],
                &o.point,
                naive_scale(&s.x, 12),
                Some((&o.quantiles[0], &o.quantiles[1])),
            );
        }
        println!(
            "{}",
            sc.row(&format!("M3 monthly, first {h} test points: {label}"), None)
        );
        let mut sc = Score::default();
        for (s, inp) in oj.iter().zip(&inputs[m3.len()..]) {
            let n = s.units.len() - h;
            let o = model.forecast(inp, &none, h, &[0.1, 0.9]);
            sc.add(
                &s.units[n..],
                &o.point,
                naive_scale(&s.units[..n], 1),
                Some((&o.quantiles[0], &o.quantiles[1])),
            );
        }
        println!(
            "{}",
            sc.row(&format!("Dominick's units, last {h} weeks: {label}"), None)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // A bad `--hp` fails here, before minutes of anchors, not when the first part trains.
    options(&args, 1)?;
    let dir = augur_testkit::datasets::dir();
    println!("# Demand-forecast benchmark (datasets: {})", dir.display());
    let want = |p: &str| args.only.is_empty() || args.only.iter().any(|o| o == p);
    if !want("m3") {
    } else if dir.join("m3/m3_monthly.json").is_file() {
        m3(&args, &dir)?;
    } else {
        println!("\nM3 dataset not found: skipped");
    }
    if !want("dominicks") {
    } else if dir.join("dominicks/oj_yx.csv").is_file() {
        dominicks(&args, &dir)?;
    } else {
        println!("\nDominick's dataset not found: skipped");
    }
    if !args.only.iter().any(|o| o == "mixed") {
    } else if dir.join("m3/m3_monthly.json").is_file() && dir.join("dominicks/oj_yx.csv").is_file()
    {
        mixed(&args, &dir)?;
    } else {
        println!("\nM3 or Dominick's dataset not found: mixed skipped");
    }
    if want("demo") {
        demo(&args.demo_hp).await?;
    }
    if !args.no_latency && want("latency") {
        latency(args.calls).await?;
    }
    Ok(())
}
