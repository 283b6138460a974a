//! Readers of the public benchmark datasets (M3 monthly, Dominick's orange juice), used by the
//! benchmark binary and the dataset tests.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::SeriesIn;

/// One M3 series: training part and the held-out test part.
#[derive(Debug, Clone)]
pub struct M3Series {
    pub id: String,
    pub x: Vec<f64>,
    pub xx: Vec<f64>,
}

impl M3Series {
    /// The training part `x` as model input (monthly: season 12).
    pub fn input(&self) -> SeriesIn {
        SeriesIn {
            values: self.x.clone(),
            season: 12,
            ..Default::default()
        }
    }
}

/// The series as if their training parts were all there is (the test parts `xx` dropped): each
/// `x` without its last `h` points as the new `x`, those points as the new `xx`; series with `x`
/// no longer than `h` are left out.
pub fn m3_nested(data: &[M3Series], h: usize) -> Vec<M3Series> {
    data.iter()
        .filter(|s| s.x.len() > h)
        .map(|s| {
            let cut = s.x.len() - h;
            M3Series {
                id: s.id.clone(),
                x: s.x[..cut].to_vec(),
                xx: s.x[cut..].to_vec(),
            }
        })
        .collect()
}

/// [`m3_nested`] as (history, actual) validation windows.
pub fn m3_validation_windows(data: &[M3Series], h: usize) -> Vec<(Vec<f64>, Vec<f64>)> {
    m3_nested(data, h)
        .into_iter()
        .map(|s| (s.x, s.xx))
        .collect()
}

/// Reads `m3_monthly.json` (a map of id -> {x, xx, ...}), sorted by id.
pub fn m3_monthly(path: &Path) -> anyhow::Result<Vec<M3Series>> {
    let bytes = std::fs::read(path)?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("{}: not a JSON object", path.display()))?;
    let nums = |v: Option<&serde_json::Value>| -> anyhow::Result<Vec<f64>> {
        v.and_then(|a| a.as_array())
            .ok_or_else(|| anyhow::anyhow!("missing array"))?
            .iter()
            .map(|x| x.as_f64().ok_or_else(|| anyhow::anyhow!("not a number")))
            .collect()
    };
    let mut out = Vec::with_capacity(obj.len());
    for (id, s) in obj {
        out.push(M3Series {
            id: id.clone(),
            x: nums(s.get("x"))?,
            xx: nums(s.get("xx"))?,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// One Dominick's store x brand series: weekly units with own price, deal and feat.
#[derive(Debug, Clone)]
pub struct OjSeries {
    pub store: String,
    pub brand: String,
    pub weeks: Vec<u32>,
    pub units: Vec<f64>,
    pub price: Vec<f64>,
    pub deal: Vec<f64>,
    pub feat: Vec<f64>,
    /// The store's demographics (`oj_storedemo.csv`, static and known in advance; empty when
    /// the file is absent or lacks the store).
    pub demographics: BTreeMap<String, f64>,
    /// Further known-in-advance covariates, each as long as `units` (e.g. the same store's
    /// other brands' prices and promotions from [`add_cross_brand`]); empty by default.
    pub extra: BTreeMap<String, Vec<f64>>,
}

impl OjSeries {
    /// The first `n` weeks as model input (covariates "price", "deal", "feat"; attributes store
    /// and brand).
    pub fn input(&self, n: usize) -> SeriesIn {
        SeriesIn {
            values: self.units[..n].to_vec(),
            season: 1,
            covariates: self.future(0, n),
            attributes: BTreeMap::from([
                ("store".to_string(), self.store.clone()),
                ("brand".to_string(), self.brand.clone()),
            ]),
            statics: self.demographics.clone(),
        }
    }

    /// The first `n` weeks only.
    pub fn truncated(&self, n: usize) -> OjSeries {
        OjSeries {
            store: self.store.clone(),
            brand: self.brand.clone(),
            weeks: self.weeks[..n].to_vec(),
            units: self.units[..n].to_vec(),
            price: self.price[..n].to_vec(),
            deal: self.deal[..n].to_vec(),
            feat: self.feat[..n].to_vec(),
            demographics: self.demographics.clone(),
            extra: self
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), v[..n].to_vec()))
                .collect(),
        }
    }

    /// Known covariates of weeks `from..to`.
    pub fn future(&self, from: usize, to: usize) -> BTreeMap<String, Vec<f64>> {
        let mut out = BTreeMap::from([
            ("price".to_string(), self.price[from..to].to_vec()),
            ("deal".to_string(), self.deal[from..to].to_vec()),
            ("feat".to_string(), self.feat[from..to].to_vec()),
        ]);
        for (k, v) in &self.extra {
            out.insert(k.clone(), v[from..to].to_vec());
        }
        out
    }
}

/// A comma-separated file of numbers with a header line (quotes trimmed), as in `oj_yx.csv`.
struct NumCsv {
    header: Vec<String>,
    /// Each non-empty line's fields, quotes trimmed, not yet parsed.
    rows: Vec<Vec<String>>,
}

impl NumCsv {
    fn read(path: &Path) -> anyhow::Result<NumCsv> {
        let text = std::fs::read_to_string(path)?;
        let mut lines = text.lines();
        let split = |l: &str| {
            l.split(',')
                .map(|x| x.trim_matches('"').to_string())
                .collect()
        };
        let header = split(lines.next().ok_or_else(|| anyhow::anyhow!("empty file"))?);
        let rows = lines.filter(|l| !l.trim().is_empty()).map(split).collect();
        Ok(NumCsv { header, rows })
    }

    fn col(&self, name: &str) -> anyhow::Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow::anyhow!("no column {name}"))
    }
}

/// Field `i` of a row as a number.
fn num(row: &[String], i: usize) -> anyhow::Result<f64> {
    Ok(row
        .get(i)
        .ok_or_else(|| anyhow::anyhow!("short line"))?
        .parse::<f64>()?)
}

/// week, units, price, deal, feat
type OjRow = (u32, f64, f64, f64, f64);

/// Reads `oj_yx.csv`: one series per store x brand over the weeks present, units =
/// exp(logmove), price = the brand's own price column.
pub fn dominicks(path: &Path) -> anyhow::Result<Vec<OjSeries>> {
    let csv = NumCsv::read(path)?;
    let (c_store, c_brand, c_week, c_log, c_deal, c_feat) = (
        csv.col("store")?,
        csv.col("brand")?,
        csv.col("week")?,
        csv.col("logmove")?,
        csv.col("deal")?,
        csv.col("feat")?,
    );
    let mut rows: BTreeMap<(u32, u32), Vec<OjRow>> = BTreeMap::new();
    for f in &csv.rows {
        let brand = num(f, c_brand)? as u32;
        let price = num(f, csv.col(&format!("price{brand}"))?)?;
        rows.entry((num(f, c_store)? as u32, brand))
            .or_default()
            .push((
                num(f, c_week)? as u32,
                num(f, c_log)?.exp(),
                price,
                num(f, c_deal)?,
                num(f, c_feat)?,
            ));
    }
    Ok(rows
        .into_iter()
        .map(|((store, brand), mut r)| {
            r.sort_by_key(|x| x.0);
            OjSeries {
                store: store.to_string(),
                brand: brand.to_string(),
                weeks: r.iter().map(|x| x.0).collect(),
                units: r.iter().map(|x| x.1).collect(),
                price: r.iter().map(|x| x.2).collect(),
                deal: r.iter().map(|x| x.3).collect(),
                feat: r.iter().map(|x| x.4).collect(),
                demographics: BTreeMap::new(),
                extra: BTreeMap::new(),
            }
        })
        .collect())
}

/// Adds the same store's other brands' prices and promotions of every week as covariates
/// ([`CROSS_BRAND`]) to each series' [`OjSeries::extra`], read from `oj_yx.csv` (whose rows
/// carry every brand's price of the store and week). A retailer plans these as it plans the
/// brand's own: each is another series' own price, deal or feature, known in advance.
pub fn add_cross_brand(path: &Path, series: &mut [OjSeries]) -> anyhow::Result<()> {
    let csv = NumCsv::read(path)?;
    let (c_store, c_brand, c_week, c_deal, c_feat) = (
        csv.col("store")?,
        csv.col("brand")?,
        csv.col("week")?,
        csv.col("deal")?,
        csv.col("feat")?,
    );
    let c_prices: Vec<usize> = (1..)
        .map_while(|b| csv.col(&format!("price{b}")).ok())
        .collect();
    if c_prices.len() < 2 {
        anyhow::bail!("fewer than two price columns");
    }
    // (store, week) -> (deal, feat) summed over the brands' rows.
    let mut promos: BTreeMap<(u32, u32), (f64, f64)> = BTreeMap::new();
    // (store, brand, week) -> (own log price - mean other, own log price - lowest other).
    let mut gaps: BTreeMap<(u32, u32, u32), (f64, f64)> = BTreeMap::new();
    for f in &csv.rows {
        let (store, brand, week) = (
            num(f, c_store)? as u32,
            num(f, c_brand)? as u32,
            num(f, c_week)? as u32,
        );
        let e = promos.entry((store, week)).or_default();
        e.0 += num(f, c_deal)?;
        e.1 += num(f, c_feat)?;
        let logs: Vec<f64> = c_prices
            .iter()
            .map(|&c| num(f, c).map(|p| p.max(1e-9).ln()))
            .collect::<anyhow::Result<_>>()?;
        let own_i = (brand as usize)
            .checked_sub(1)
            .filter(|i| *i < logs.len())
            .ok_or_else(|| anyhow::anyhow!("brand {brand} has no price column"))?;
        let own = logs[own_i];
        let others = logs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != own_i)
            .map(|(_, v)| *v);
        let mean = others.clone().sum::<f64>() / (logs.len() - 1) as f64;
        let min = others.fold(f64::INFINITY, f64::min);
        gaps.insert((store, brand, week), (own - mean, own - min));
    }
    for s in series.iter_mut() {
        let (store, brand) = (s.store.parse::<u32>()?, s.brand.parse::<u32>()?);
        let mut cols: [Vec<f64>; 4] = Default::default();
        for (t, w) in s.weeks.iter().enumerate() {
            let (rel, min) = gaps.get(&(store, brand, *w)).copied().unwrap_or((0.0, 0.0));
            let (deal, feat) = promos.get(&(store, *w)).copied().unwrap_or_default();
            cols[0].push(rel);
            cols[1].push(min);
            cols[2].push(deal - s.deal[t]);
            cols[3].push(feat - s.feat[t]);
        }
        for (name, v) in CROSS_BRAND.iter().zip(cols) {
            s.extra.insert(name.to_string(), v);
        }
    }
    Ok(())
}

/// The covariates [`add_cross_brand`] adds: own log price minus the mean and minus the lowest
/// log price of the store's other brands that week, and how many other brands of the store are
/// on deal / featured that week. The first two are log ratios already: no name holds "price",
/// which would make the models take its log again.
pub const CROSS_BRAND: [&str; 4] = ["xb_rel", "xb_min", "xb_deal", "xb_feat"];

/// Reads `oj_storedemo.csv` (column `STORE`, then one numeric column per descriptor) into the
/// series' [`OjSeries::demographics`], keys lower-cased; returns how many stores it described.
pub fn add_store_demographics(path: &Path, series: &mut [OjSeries]) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("empty file"))?
        .split(',')
        .map(|h| h.trim_matches('"').to_lowercase())
        .collect();
    let c_store = header
        .iter()
        .position(|h| h == "store")
        .ok_or_else(|| anyhow::anyhow!("no column STORE"))?;
    let mut stores: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').map(|x| x.trim_matches('"')).collect();
        let store = f
            .get(c_store)
            .ok_or_else(|| anyhow::anyhow!("short line"))?
            .parse::<f64>()?;
        let mut values = BTreeMap::new();
        for (i, name) in header.iter().enumerate() {
            if i == c_store {
                continue;
            }
            let v: f64 = f
                .get(i)
                .ok_or_else(|| anyhow::anyhow!("short line"))?
                .parse()?;
            if v.is_finite() {
                values.insert(name.clone(), v);
            }
        }
        stores.insert((store as u32).to_string(), values);
    }
    for s in series.iter_mut() {
        if let Some(v) = stores.get(&s.store) {
            s.demographics = v.clone();
        }
    }
    Ok(stores.len())
}
