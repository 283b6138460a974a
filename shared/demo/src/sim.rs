//! The simulation: catalogue, customers, their behaviour over time, and the planted anomalies.
//!
//! Times are seconds since the Unix epoch (`i64`) and money is integer euro cents until the events
//! are built, so totals always equal the sum of their lines.

use std::collections::BTreeSet;

use augur_proto::featurestore::InteractionKind;
use chrono::{DateTime, Datelike, NaiveDate, Weekday};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};

use crate::dist::{between, exponential, gamma, hex, lognormal, normal, uniform, weighted};
use crate::text::{self, CATEGORIES, Category, Tone};
use crate::{FraudKind, SpamKind};

pub(crate) const MIN: i64 = 60;
pub(crate) const HOUR: i64 = 3_600;
pub(crate) const DAY: i64 = 86_400;
pub(crate) const WEEK: i64 = 7 * DAY;

/// Demand multiplier for a product while it is on promotion.
const PROMO_UPLIFT: f64 = 2.0;
/// Mean genuine purchase rate (orders per day per customer, before seasonality).
const MEAN_RATE: f64 = 0.0105;
/// Browsing sessions without a purchase, relative to the purchase rate.
const BROWSE_RATIO: f64 = 0.6;
/// Base churn hazard per day.
const BASE_HAZARD: f64 = 1.0 / 900.0;
/// How long before churning a customer's activity starts to fade, and how fast browsing
/// decays afterwards.
const FADE_BEFORE: i64 = 60 * DAY;
const FADE_AFTER: i64 = 20 * DAY;

// ------------------------------------------------------------------------------------------------
// Calendar

/// Per-day demand factors (weekly and yearly seasonality) over `[start, end)`.
pub(crate) struct Calendar {
    pub start: i64,
    pub end: i64,
    factor: Vec<f64>,
    max_factor: f64,
    cat_factor: Vec<Vec<f64>>,
}

fn circular_bump(doy: f64, center: f64, width: f64) -> f64 {
    let d = (doy - center).abs();
    let d = d.min(365.25 - d);
    (-0.5 * (d / width).powi(2)).exp()
}

fn date_of(t: i64) -> NaiveDate {
    DateTime::from_timestamp(t, 0).map_or(NaiveDate::MIN, |d| d.date_naive())
}

fn midnight(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |dt| dt.and_utc().timestamp())
}

/// Friday after the fourth Thursday of November.
fn black_friday(year: i32) -> Option<NaiveDate> {
    NaiveDate::from_weekday_of_month_opt(year, 11, Weekday::Thu, 4).and_then(|d| d.succ_opt())
}

impl Calendar {
    pub(crate) fn new(start: i64, end: i64) -> Self {
        let days = usize::try_from((end - start + DAY - 1) / DAY)
            .unwrap_or(0)
            .max(1);
        let mut factor = Vec::with_capacity(days);
        let mut cat_factor = Vec::with_capacity(days);
        for d in 0..days {
            let date = date_of(start + i64::try_from(d).unwrap_or(0) * DAY);
            let doy = f64::from(date.ordinal0());
            let bf = black_friday(date.year()).map_or(0.0, |b| {
                let gap = (date - b).num_days() as f64;
                (-0.5 * (gap / 2.0).powi(2)).exp()
            });
            let yearly = 1.0 + 0.1 * (std::f64::consts::TAU * (doy - 15.0) / 365.25).cos()
                - 0.15 * circular_bump(doy, 205.0, 25.0)
                + 0.8 * circular_bump(doy, 348.0, 10.0)
                + 0.5 * bf;
            let weekly = text::WEEKDAYS[date.weekday().num_days_from_monday() as usize];
            factor.push(yearly * weekly);
            cat_factor.push(
                CATEGORIES
                    .iter()
                    .map(|c| {
                        (1.0 + c.xmas * circular_bump(doy, 350.0, 15.0)
                            + c.summer * circular_bump(doy, 195.0, 35.0))
                        .max(0.1)
                    })
                    .collect(),
            );
        }
        let max_factor = factor.iter().copied().fold(0.0, f64::max);
        Calendar {
            start,
            end,
            factor,
            max_factor,
            cat_factor,
        }
    }

    pub(crate) fn span(&self) -> i64 {
        self.end - self.start
    }

    pub(crate) fn day(&self, t: i64) -> usize {
        usize::try_from((t - self.start).div_euclid(DAY))
            .unwrap_or(0)
            .min(self.factor.len() - 1)
    }

    fn factor(&self, t: i64) -> f64 {
        self.factor[self.day(t)]
    }

    fn cat_factor(&self, t: i64, cat: usize) -> f64 {
        self.cat_factor[self.day(t)][cat]
    }

    /// A uniform time in `[start + lo, end - hi)`, shrinking the margins on short periods.
    fn time_in<R: Rng>(&self, rng: &mut R, lo: i64, hi: i64) -> i64 {
        let lo = lo.min(self.span() / 4);
        let hi = hi.min(self.span() / 4);
        between(rng, self.start + lo, self.end - hi)
    }

    /// Moves `t` to an hour of its day drawn from the daily activity profile, if that stays
    /// inside `[lo, hi)`.
    fn retime<R: Rng>(rng: &mut R, t: i64, lo: i64, hi: i64) -> i64 {
        let hour = weighted(rng, &text::HOURS).unwrap_or(12);
        let day_start = t - t.rem_euclid(DAY);
        let moved = day_start + i64::try_from(hour).unwrap_or(12) * HOUR + between(rng, 0, HOUR);
        if moved >= lo && moved < hi { moved } else { t }
    }
}

/// Arrival times of a Poisson process with peak rate `rate_per_day`, thinned by `accept(t)` in
/// [0, 1], over `[lo, hi)`, sorted.
fn arrivals<R: Rng>(
    rng: &mut R,
    rate_per_day: f64,
    lo: i64,
    hi: i64,
    accept: impl Fn(i64) -> f64,
) -> Vec<i64> {
    let mut out = Vec::new();
    if rate_per_day <= 0.0 || hi <= lo {
        return out;
    }
    let mut t = lo as f64;
    loop {
        t += exponential(rng, rate_per_day) * DAY as f64;
        if t >= hi as f64 {
            break;
        }
        let ti = t as i64;
        if rng.random::<f64>() < accept(ti) {
            out.push(Calendar::retime(rng, ti, lo, hi));
        }
    }
    out.sort_unstable();
    out
}

// ------------------------------------------------------------------------------------------------
// Catalogue

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Gone {
    OutOfStock,
    Inactive,
}

pub(crate) struct Prod {
    pub sku: String,
    pub cat: usize,
    pub item: &'static str,
    pub brand: &'static str,
    pub color: &'static str,
    pub title: String,
    pub description: String,
    pub created: i64,
    pub popularity: f64,
    /// Latent quality (mean star rating of genuine reviews before noise).
    pub quality: f64,
    /// Standardised log price within the category.
    pub price_z: f64,
    /// Regular list price in cents from each timestamp on; the first entry is at `created`.
    pub prices: Vec<(i64, i64)>,
    /// Monday 00:00 UTC of each promotion week, sorted.
    pub promo_weeks: Vec<i64>,
    pub discount: f64,
    pub gone: Option<(i64, Gone)>,
    pub complement: Option<usize>,
}

impl Prod {
    pub(crate) fn category(&self) -> &'static Category {
        &CATEGORIES[self.cat]
    }

    pub(crate) fn list_price(&self, t: i64) -> i64 {
        let i = self.prices.partition_point(|&(from, _)| from <= t);
        self.prices[i.saturating_sub(1)].1
    }

    pub(crate) fn on_promo(&self, t: i64) -> bool {
        let i = self.promo_weeks.partition_point(|&w| w <= t);
        i > 0 && t < self.promo_weeks[i - 1] + WEEK
    }

    /// The selling price at `t` in cents and whether it is a promotion price.
    pub(crate) fn price(&self, t: i64) -> (i64, bool) {
        let list = self.list_price(t);
        if self.on_promo(t) {
            ((list as f64 * (1.0 - self.discount)).round() as i64, true)
        } else {
            (list, false)
        }
    }

    pub(crate) fn available(&self, t: i64) -> bool {
        t >= self.created && self.gone.is_none_or(|(g, _)| t < g)
    }
}

fn cents_99(eur: f64) -> i64 {
    (eur.max(1.0).floor() as i64) * 100 - 1
}

pub(crate) struct Catalog {
    pub cal: Calendar,
    pub products: Vec<Prod>,
    pub by_cat: Vec<Vec<usize>>,
}

pub(crate) fn build_catalog(rng: &mut StdRng, n: usize, cal: Calendar) -> Catalog {
    let k = CATEGORIES.len();
    let span = cal.span();
    let mut created: Vec<i64> = (0..n)
        .map(|_| {
            if rng.random_bool(0.85) {
                cal.start + between(rng, 0, HOUR)
            } else {
                cal.start + (span as f64 * uniform(rng, 0.05, 0.9)) as i64
            }
        })
        .collect();
    created.sort_unstable();
    let mut ranks: Vec<usize> = (0..n).collect();
    ranks.shuffle(rng);
    let mut cats: Vec<usize> = (0..n).map(|i| i % k).collect();
    cats.shuffle(rng);

    let mut products = Vec::with_capacity(n);
    for (i, &created) in created.iter().enumerate() {
        let cat = &CATEGORIES[cats[i]];
        let item = cat.items.choose(rng).copied().unwrap_or("Item");
        let brand = cat.brands.choose(rng).copied().unwrap_or("Generic");
        let color = cat.colors.choose(rng).copied().unwrap_or("black");
        let eur = lognormal(rng, cat.median_price, cat.price_sigma);
        let list = cents_99(eur);
        let price_z = (eur / cat.median_price).ln() / cat.price_sigma;
        let (title, description) = text::product_text(rng, cat, item, brand, color);
        let quality = (3.9 + 0.6 * normal(rng)).clamp(1.5, 4.9);
        let popularity = 1.0 / ((ranks[i] + 1) as f64).powf(0.9);
        let mut prices = vec![(created, list)];
        let changes = weighted(rng, &[0.6, 0.3, 0.1]).unwrap_or(0);
        let mut change_times: Vec<i64> = (0..changes)
            .map(|_| between(rng, created + 14 * DAY, cal.end - DAY))
            .collect();
        change_times.sort_unstable();
        for t in change_times {
            if t <= prices[prices.len() - 1].0 {
                continue;
            }
            let old = prices[prices.len() - 1].1 as f64 / 100.0;
            prices.push((t, cents_99(old * uniform(rng, 0.88, 1.12) + 1.0)));
        }
        products.push(Prod {
            sku: format!("sku-{:05}", i + 1),
            cat: cats[i],
            item,
            brand,
            color,
            title,
            description,
            created,
            popularity,
            quality,
            price_z,
            prices,
            promo_weeks: Vec::new(),
            discount: uniform(rng, 0.15, 0.25),
            gone: None,
            complement: None,
        });
    }

    // Out of stock at the end (~5%) and delisted (~2%).
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let n_oos = ((n as f64 * 0.05).round() as usize).max(1);
    let n_inactive = ((n as f64 * 0.02).round() as usize).max(1);
    for (j, &p) in order.iter().take(n_oos + n_inactive).enumerate() {
        let prod = &mut products[p];
        let (t, kind) = if j < n_oos {
            (
                cal.end - between(rng, 3 * DAY, (60 * DAY).min(span / 4)),
                Gone::OutOfStock,
            )
        } else {
            (
                cal.start + (span as f64 * uniform(rng, 0.4, 0.95)) as i64,
                Gone::Inactive,
            )
        };
        prod.gone = Some((t.max(prod.created + 7 * DAY).min(cal.end - HOUR), kind));
    }

    // Promotion weeks: Monday-to-Sunday, a few per promoted product, plus Black Friday week.
    let first_monday = {
        let d = date_of(cal.start);
        let back = i64::from(d.weekday().num_days_from_monday());
        let m = midnight(d) - back * DAY;
        if m < cal.start { m + WEEK } else { m }
    };
    let weeks: Vec<i64> = (0..)
        .map(|i| first_monday + i * WEEK)
        .take_while(|w| w + WEEK <= cal.end)
        .collect();
    let bf_weeks: Vec<i64> = weeks
        .iter()
        .copied()
        .filter(|&w| {
            black_friday(date_of(w).year()).is_some_and(|b| {
                let bt = midnight(b);
                bt >= w && bt < w + WEEK
            })
        })
        .collect();
    for prod in &mut products {
        let ok = |w: i64| w >= prod.created && prod.gone.is_none_or(|(g, _)| w + WEEK <= g);
        let valid: Vec<i64> = weeks.iter().copied().filter(|&w| ok(w)).collect();
        let mut chosen = BTreeSet::new();
        if rng.random_bool(0.55) && !valid.is_empty() {
            let k = rng.random_range(2..=6usize).min(valid.len());
            for w in valid.choose_multiple(rng, k) {
                chosen.insert(*w);
            }
        }
        for &w in &bf_weeks {
            if ok(w) && rng.random_bool(0.35) {
                chosen.insert(w);
            }
        }
        prod.promo_weeks = chosen.into_iter().collect();
    }

    let mut by_cat = vec![Vec::new(); k];
    for (i, p) in products.iter().enumerate() {
        by_cat[p.cat].push(i);
    }
    // Complements: products often bought together.
    for i in 0..n {
        if !rng.random_bool(0.3) {
            continue;
        }
        let target = &by_cat[products[i].category().complement];
        let w: Vec<f64> = target
            .iter()
            .map(|&j| if j == i { 0.0 } else { products[j].popularity })
            .collect();
        products[i].complement = weighted(rng, &w).map(|x| target[x]);
    }
    Catalog {
        cal,
        products,
        by_cat,
    }
}

// ------------------------------------------------------------------------------------------------
// Customers

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    Genuine,
    Fraudster,
    Spammer,
}

pub(crate) struct Cust {
    pub id: String,
    pub role: Role,
    pub signup: i64,
    pub country: &'static str,
    pub gold: bool,
    pub channel: &'static str,
    pub age_band: &'static str,
    /// Purchases per day at seasonality 1.
    pub rate: f64,
    pub churn_at: Option<i64>,
    /// Preferred categories with weights.
    pub prefs: Vec<(usize, f64)>,
    pub price_pref: f64,
    /// Device fingerprints with the sales channel they use ("web" or "app").
    pub devices: Vec<(String, &'static str)>,
    pub ip: String,
    pub pay: &'static str,
    pub token: String,
    /// Signs up at checkout: the first order follows within the hour.
    pub checkout_signup: bool,
}

fn pick_weighted<R: Rng>(rng: &mut R, xs: &[(&'static str, f64)]) -> &'static str {
    let w: Vec<f64> = xs.iter().map(|x| x.1).collect();
    weighted(rng, &w).map_or(xs[0].0, |i| xs[i].0)
}

fn new_ip<R: Rng>(rng: &mut R) -> String {
    format!(
        "100.{}.{}.{}",
        rng.random_range(64..128),
        rng.random_range(0..256),
        rng.random_range(1..255)
    )
}

fn new_device<R: Rng>(rng: &mut R) -> String {
    format!("dev_{}", hex(rng, 16))
}

fn new_token<R: Rng>(rng: &mut R) -> String {
    format!("tok_{}", hex(rng, 16))
}

/// A customer record with everything drawn; the caller sets the behaviour for planted roles.
fn new_customer<R: Rng>(rng: &mut R, role: Role, signup: i64) -> Cust {
    let devices = (0..1 + weighted(rng, &[0.6, 0.35, 0.05]).unwrap_or(0))
        .map(|_| {
            (
                new_device(rng),
                if rng.random_bool(0.4) { "app" } else { "web" },
            )
        })
        .collect();
    Cust {
        id: String::new(),
        role,
        signup,
        country: pick_weighted(rng, text::COUNTRIES),
        gold: false,
        channel: pick_weighted(rng, text::CHANNELS),
        age_band: pick_weighted(rng, text::AGE_BANDS),
        rate: 0.0,
        churn_at: None,
        prefs: Vec::new(),
        price_pref: normal(rng),
        devices,
        ip: new_ip(rng),
        pay: pick_weighted(rng, text::PAYMENT_METHODS),
        token: new_token(rng),
        checkout_signup: false,
    }
}

pub(crate) fn build_customers(rng: &mut StdRng, n: usize, cal: &Calendar) -> Vec<Cust> {
    let span = cal.span() - 3 * HOUR;
    // Signup density grows linearly over the period (1 at the start, 1.8 at the end).
    let mut signups: Vec<i64> = (0..n)
        .map(|_| {
            let u = rng.random::<f64>();
            let x = (-1.0 + (1.0 + 2.24 * u).sqrt()) / 0.8;
            cal.start + 2 * HOUR + (x * span as f64) as i64
        })
        .collect();
    signups.sort_unstable();
    let popularity: Vec<f64> = CATEGORIES.iter().map(|c| c.popularity).collect();
    signups
        .into_iter()
        .map(|signup| {
            let mut c = new_customer(rng, Role::Genuine, signup);
            c.gold = rng.random_bool(0.08);
            let channel_rate = match c.channel {
                "email" => 1.2,
                "referral" => 1.1,
                "social" => 0.8,
                _ => 1.0,
            };
            c.rate = gamma(rng, 1.0, MEAN_RATE) * channel_rate * if c.gold { 1.5 } else { 1.0 };
            let channel_hazard = match c.channel {
                "social" => 1.5,
                "referral" => 0.7,
                "email" => 0.9,
                _ => 1.0,
            };
            let hazard = BASE_HAZARD
                * channel_hazard
                * if c.gold { 0.5 } else { 1.0 }
                * (MEAN_RATE / c.rate.max(1e-9)).powf(0.35).clamp(0.5, 2.5)
                * lognormal(rng, 1.0, 0.4);
            let churn = signup + (exponential(rng, hazard) * DAY as f64) as i64;
            c.churn_at = (churn < cal.end).then_some(churn);
            let k = 1 + weighted(rng, &[0.4, 0.4, 0.2]).unwrap_or(0);
            let mut w = popularity.clone();
            for _ in 0..k {
                if let Some(cat) = weighted(rng, &w) {
                    w[cat] = 0.0;
                    c.prefs.push((cat, 0.2 + gamma(rng, 1.0, 1.0)));
                }
            }
            c.checkout_signup = rng.random_bool(0.15);
            c
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Activity

pub(crate) struct Line {
    pub prod: usize,
    pub qty: i64,
    pub cents: i64,
    pub promo: bool,
}

pub(crate) struct OrderSim {
    pub id: String,
    pub cust: usize,
    pub ts: i64,
    pub lines: Vec<Line>,
    pub pay: &'static str,
    pub token: String,
    pub device: String,
    pub channel: &'static str,
    pub ip: String,
    pub ship: &'static str,
    pub bill: &'static str,
    pub paid: Option<i64>,
    pub cancelled: Option<i64>,
    pub refunded: Option<i64>,
    pub charged_back: Option<i64>,
    pub fraud: Option<FraudKind>,
}

impl OrderSim {
    pub(crate) fn total_cents(&self) -> i64 {
        self.lines.iter().map(|l| l.qty * l.cents).sum()
    }
}

pub(crate) struct Ix {
    pub ts: i64,
    pub cust: usize,
    pub prod: Option<usize>,
    pub kind: InteractionKind,
    pub query: String,
    pub session: String,
    pub value: f64,
}

pub(crate) struct RevSim {
    pub id: String,
    pub ts: i64,
    pub cust: usize,
    pub prod: usize,
    pub rating: i32,
    pub title: String,
    pub text: String,
    pub spam: Option<SpamKind>,
    /// Moderation outcome: when it arrives (the label is SPAM for spam, GENUINE otherwise).
    pub labelled_at: Option<i64>,
}

#[derive(Default)]
pub(crate) struct Activity {
    pub orders: Vec<OrderSim>,
    pub ixs: Vec<Ix>,
    pub reviews: Vec<RevSim>,
    /// (customer, ts) of tier upgrades to gold.
    pub upgrades: Vec<(usize, i64)>,
}

type Step = (Option<usize>, InteractionKind, String);

impl Activity {
    /// Pushes `steps` as one session with increasing times in `[s0, s1)`.
    fn session<R: Rng>(
        &mut self,
        rng: &mut R,
        cust: usize,
        session: &str,
        s0: i64,
        s1: i64,
        steps: Vec<Step>,
    ) {
        let span = (s1 - s0).max(1);
        let mut offsets: Vec<i64> = (0..steps.len()).map(|_| between(rng, 0, span)).collect();
        offsets.sort_unstable();
        for ((prod, kind, query), off) in steps.into_iter().zip(offsets) {
            self.ixs.push(Ix {
                ts: s0 + off,
                cust,
                prod,
                kind,
                query,
                session: session.to_string(),
                value: 0.0,
            });
        }
    }

    fn purchases(&mut self, cust: usize, session: &str, ts: i64, lines: &[Line]) {
        for l in lines {
            self.ixs.push(Ix {
                ts,
                cust,
                prod: Some(l.prod),
                kind: InteractionKind::Purchase,
                query: String::new(),
                session: session.to_string(),
                value: l.qty as f64,
            });
        }
    }
}

impl Catalog {
    /// A product `c` would look at or buy at `t`: a preferred category (mostly), then a product
    /// by popularity, price fit and promotion.
    fn pick<R: Rng>(&self, rng: &mut R, c: &Cust, t: i64, exclude: &[usize]) -> Option<usize> {
        for _ in 0..4 {
            let cat = if !c.prefs.is_empty() && rng.random_bool(0.85) {
                let w: Vec<f64> = c
                    .prefs
                    .iter()
                    .map(|&(k, w)| w * self.cal.cat_factor(t, k))
                    .collect();
                weighted(rng, &w).map(|i| c.prefs[i].0)
            } else {
                let w: Vec<f64> = CATEGORIES
                    .iter()
                    .enumerate()
                    .map(|(k, cat)| cat.popularity * self.cal.cat_factor(t, k))
                    .collect();
                weighted(rng, &w)
            };
            if let Some(p) = cat.and_then(|k| self.pick_in(rng, c.price_pref, k, t, exclude)) {
                return Some(p);
            }
        }
        None
    }

    fn pick_in<R: Rng>(
        &self,
        rng: &mut R,
        price_pref: f64,
        cat: usize,
        t: i64,
        exclude: &[usize],
    ) -> Option<usize> {
        let ids = &self.by_cat[cat];
        let w: Vec<f64> = ids
            .iter()
            .map(|&p| {
                let pr = &self.products[p];
                if exclude.contains(&p) || !pr.available(t) {
                    0.0
                } else {
                    let promo = if pr.on_promo(t) { PROMO_UPLIFT } else { 1.0 };
                    pr.popularity * (0.6 * price_pref * pr.price_z).exp() * promo
                }
            })
            .collect();
        weighted(rng, &w).map(|i| ids[i])
    }

    fn line<R: Rng>(&self, rng: &mut R, prod: usize, t: i64) -> Line {
        let p = &self.products[prod];
        let qty = if p.category().multi_unit {
            1 + weighted(rng, &[0.6, 0.25, 0.1, 0.05]).unwrap_or(0)
        } else {
            1 + weighted(rng, &[0.9, 0.08, 0.02]).unwrap_or(0)
        };
        let (cents, promo) = p.price(t);
        Line {
            prod,
            qty: i64::try_from(qty).unwrap_or(1),
            cents,
            promo,
        }
    }
}

fn fade(c: &Cust, t: i64) -> f64 {
    match c.churn_at {
        Some(ch) if t >= ch => (-((t - ch) as f64) / FADE_AFTER as f64).exp(),
        Some(ch) if t >= ch - FADE_BEFORE => 0.35 + 0.65 * (ch - t) as f64 / FADE_BEFORE as f64,
        _ => 1.0,
    }
}

/// Orders, purchase sessions and browsing sessions of one genuine customer.
pub(crate) fn customer_activity(
    rng: &mut StdRng,
    cat: &Catalog,
    c: &Cust,
    ci: usize,
    act: &mut Activity,
) {
    let cal = &cat.cal;
    let peak = cal.max_factor;
    let buy_end = c.churn_at.map_or(cal.end, |ch| ch.min(cal.end));
    let mut times = arrivals(rng, c.rate * peak, c.signup, buy_end, |t| {
        cal.factor(t) / peak * fade(c, t)
    });
    if c.checkout_signup {
        let t0 = c.signup + between(rng, 2 * MIN, 50 * MIN);
        if t0 < buy_end {
            times.insert(0, t0);
        }
    }
    for t in times {
        place_order(rng, cat, c, ci, t, act);
    }
    let browse_end = c
        .churn_at
        .map_or(cal.end, |ch| (ch + 3 * FADE_AFTER).min(cal.end));
    let browse = arrivals(
        rng,
        c.rate * BROWSE_RATIO * peak,
        c.signup,
        browse_end,
        |t| cal.factor(t) / peak * fade(c, t),
    );
    for t in browse {
        browse_session(rng, cat, c, ci, t, act);
    }
}

fn place_order(rng: &mut StdRng, cat: &Catalog, c: &Cust, ci: usize, t: i64, act: &mut Activity) {
    let Some(first) = cat.pick(rng, c, t, &[]) else {
        return;
    };
    let n_lines = 1 + weighted(rng, &[0.55, 0.27, 0.12, 0.06]).unwrap_or(0);
    let mut prods = vec![first];
    while prods.len() < n_lines {
        let complement = cat.products[first]
            .complement
            .filter(|&p| !prods.contains(&p) && cat.products[p].available(t));
        let next = match complement {
            Some(p) if rng.random_bool(0.45) => Some(p),
            _ if rng.random_bool(0.5) => {
                cat.pick_in(rng, c.price_pref, cat.products[first].cat, t, &prods)
            }
            _ => cat.pick(rng, c, t, &prods),
        };
        match next {
            Some(p) => prods.push(p),
            None => break,
        }
    }
    let lines: Vec<Line> = prods.iter().map(|&p| cat.line(rng, p, t)).collect();
    let (device, channel) = if rng.random_bool(0.75) {
        c.devices[0].clone()
    } else {
        c.devices
            .choose(rng)
            .cloned()
            .unwrap_or_else(|| c.devices[0].clone())
    };
    let pay = if rng.random_bool(0.9) {
        c.pay
    } else {
        pick_weighted(rng, text::PAYMENT_METHODS)
    };
    let bill = if rng.random_bool(0.02) {
        pick_weighted(rng, text::COUNTRIES)
    } else {
        c.country
    };
    let end = cat.cal.end;
    let paid = rng
        .random_bool(0.965)
        .then(|| t + between(rng, MIN, 15 * MIN));
    let cancelled =
        (paid.is_none() && rng.random_bool(0.6)).then(|| t + between(rng, HOUR, 36 * HOUR));
    let refunded =
        (paid.is_some() && rng.random_bool(0.021)).then(|| t + between(rng, 4 * DAY, 30 * DAY));
    let order = OrderSim {
        id: String::new(),
        cust: ci,
        ts: t,
        lines,
        pay,
        token: if pay == "invoice" {
            String::new()
        } else {
            c.token.clone()
        },
        device,
        channel,
        ip: if rng.random_bool(0.92) {
            c.ip.clone()
        } else {
            new_ip(rng)
        },
        ship: c.country,
        bill,
        paid: paid.filter(|&x| x < end),
        cancelled: cancelled.filter(|&x| x < end),
        refunded: refunded.filter(|&x| x < end),
        charged_back: None,
        fraud: None,
    };
    purchase_session(rng, cat, c, ci, &order, act);
    act.orders.push(order);
}

fn purchase_session(
    rng: &mut StdRng,
    cat: &Catalog,
    c: &Cust,
    ci: usize,
    o: &OrderSim,
    act: &mut Activity,
) {
    let t = o.ts;
    let session = format!("s-{}", hex(rng, 12));
    let first = &cat.products[o.lines[0].prod];
    let mut browse: Vec<(usize, bool)> = o.lines.iter().map(|l| (l.prod, true)).collect();
    for _ in 0..between(rng, 0, 4) {
        if let Some(p) = cat.pick_in(rng, c.price_pref, first.cat, t, &[])
            && !browse.iter().any(|b| b.0 == p)
        {
            browse.push((p, false));
        }
    }
    browse.shuffle(rng);
    let lo = browse
        .iter()
        .map(|b| cat.products[b.0].created)
        .fold(c.signup.max(cat.cal.start), i64::max)
        + 1;
    let s0 = (t - between(rng, 4 * MIN, 35 * MIN)).max(lo).min(t - 1);
    let mut steps: Vec<Step> = Vec::new();
    if rng.random_bool(0.45) {
        let q = text::search_query(rng, first.category(), first.item, first.brand);
        steps.push((None, InteractionKind::Search, q));
    }
    let mut removed = None;
    for &(p, bought) in &browse {
        if rng.random_bool(0.4) {
            steps.push((Some(p), InteractionKind::Click, String::new()));
        }
        steps.push((Some(p), InteractionKind::View, String::new()));
        if bought {
            steps.push((Some(p), InteractionKind::AddToCart, String::new()));
        } else if removed.is_none() && rng.random_bool(0.12) {
            steps.push((Some(p), InteractionKind::AddToCart, String::new()));
            removed = Some(p);
        }
    }
    if let Some(p) = removed {
        steps.push((Some(p), InteractionKind::RemoveFromCart, String::new()));
    }
    act.session(rng, ci, &session, s0, t, steps);
    act.purchases(ci, &session, t, &o.lines);
}

fn browse_session(
    rng: &mut StdRng,
    cat: &Catalog,
    c: &Cust,
    ci: usize,
    t: i64,
    act: &mut Activity,
) {
    let Some(first) = cat.pick(rng, c, t, &[]) else {
        return;
    };
    let session = format!("s-{}", hex(rng, 12));
    let s1 = (t + between(rng, MIN, 20 * MIN)).min(cat.cal.end);
    let n_views = 1 + weighted(rng, &[0.35, 0.3, 0.2, 0.15]).unwrap_or(0);
    let mut viewed = vec![first];
    while viewed.len() < n_views {
        let next = if rng.random_bool(0.7) {
            cat.pick_in(rng, c.price_pref, cat.products[first].cat, t, &viewed)
        } else {
            cat.pick(rng, c, t, &viewed)
        };
        match next {
            Some(p) => viewed.push(p),
            None => break,
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    if rng.random_bool(0.4) {
        let p = &cat.products[first];
        steps.push((
            None,
            InteractionKind::Search,
            text::search_query(rng, p.category(), p.item, p.brand),
        ));
    }
    for &p in &viewed {
        if rng.random_bool(0.35) {
            steps.push((Some(p), InteractionKind::Click, String::new()));
        }
        steps.push((Some(p), InteractionKind::View, String::new()));
    }
    if rng.random_bool(0.22)
        && let Some(&p) = viewed.choose(rng)
    {
        steps.push((Some(p), InteractionKind::AddToCart, String::new()));
        if rng.random_bool(0.3) {
            steps.push((Some(p), InteractionKind::RemoveFromCart, String::new()));
        }
    }
    if rng.random_bool(0.08)
        && let Some(&p) = viewed.choose(rng)
    {
        steps.push((Some(p), InteractionKind::Wishlist, String::new()));
    }
    act.session(rng, ci, &session, t, s1, steps);
}

/// Tier upgrades: some standard customers become gold a little after their sixth paid order.
pub(crate) fn upgrades(
    rng: &mut StdRng,
    customers: &[Cust],
    by_cust: &[Vec<usize>],
    act: &mut Activity,
    end: i64,
) {
    for (ci, c) in customers.iter().enumerate() {
        if c.role != Role::Genuine || c.gold {
            continue;
        }
        let paid: Vec<i64> = by_cust[ci]
            .iter()
            .map(|&o| &act.orders[o])
            .filter(|o| o.fraud.is_none() && o.paid.is_some())
            .map(|o| o.ts)
            .collect();
        if paid.len() >= 6 && rng.random_bool(0.6) {
            let t = paid[5] + between(rng, HOUR, 72 * HOUR);
            if t < end {
                act.upgrades.push((ci, t));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Planted fraud

fn median(mut xs: Vec<i64>) -> i64 {
    if xs.is_empty() {
        return 0;
    }
    xs.sort_unstable();
    xs[xs.len() / 2]
}

/// Genuine orders per customer, in time order.
pub(crate) fn orders_by_customer(n_customers: usize, orders: &[OrderSim]) -> Vec<Vec<usize>> {
    let mut by = vec![Vec::new(); n_customers];
    for (i, o) in orders.iter().enumerate() {
        if let Some(v) = by.get_mut(o.cust) {
            v.push(i);
        }
    }
    for v in &mut by {
        v.sort_by_key(|&i| orders[i].ts);
    }
    by
}

/// An expensive basket worth at least about `target` cents at `t`.
fn expensive_basket<R: Rng>(rng: &mut R, cat: &Catalog, t: i64, target: i64) -> Vec<Line> {
    let mut cands: Vec<usize> = (0..cat.products.len())
        .filter(|&p| cat.products[p].available(t))
        .collect();
    cands.sort_by_key(|&p| std::cmp::Reverse(cat.products[p].price(t).0));
    cands.truncate((cands.len() / 5).max(3));
    let mut lines: Vec<Line> = Vec::new();
    let total = |ls: &[Line]| ls.iter().map(|l| l.qty * l.cents).sum::<i64>();
    while total(&lines) < target && lines.len() < 4 {
        let free: Vec<usize> = cands
            .iter()
            .copied()
            .filter(|p| !lines.iter().any(|l| l.prod == *p))
            .collect();
        let Some(&p) = free.choose(rng) else { break };
        let (cents, promo) = cat.products[p].price(t);
        lines.push(Line {
            prod: p,
            qty: 1,
            cents,
            promo,
        });
    }
    while total(&lines) < target {
        let open: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].qty < 5).collect();
        let Some(&i) = open.choose(rng) else { break };
        lines[i].qty += 1;
    }
    lines
}

struct FraudOrder {
    cust: usize,
    ts: i64,
    lines: Vec<Line>,
    device: String,
    ip: String,
    bill: &'static str,
    kind: FraudKind,
}

fn push_fraud<R: Rng>(
    rng: &mut R,
    customers: &[Cust],
    end: i64,
    f: FraudOrder,
    act: &mut Activity,
) {
    let c = &customers[f.cust];
    let session = format!("s-{}", hex(rng, 12));
    let s0 = (f.ts - between(rng, 2 * MIN, 6 * MIN))
        .max(c.signup + 1)
        .min(f.ts - 1);
    let mut steps = Vec::new();
    for l in &f.lines {
        steps.push((Some(l.prod), InteractionKind::View, String::new()));
        steps.push((Some(l.prod), InteractionKind::AddToCart, String::new()));
    }
    act.session(rng, f.cust, &session, s0, f.ts, steps);
    act.purchases(f.cust, &session, f.ts, &f.lines);
    let paid = f.ts + between(rng, MIN, 5 * MIN);
    let cb = paid + between(rng, 10 * DAY, 60 * DAY);
    act.orders.push(OrderSim {
        id: String::new(),
        cust: f.cust,
        ts: f.ts,
        lines: f.lines,
        pay: "card",
        token: new_token(rng),
        device: f.device,
        channel: "web",
        ip: f.ip,
        ship: c.country,
        bill: f.bill,
        paid: (paid < end).then_some(paid),
        cancelled: None,
        refunded: None,
        charged_back: (cb < end).then_some(cb),
        fraud: Some(f.kind),
    });
}

fn foreign<R: Rng>(rng: &mut R) -> &'static str {
    text::FOREIGN_COUNTRIES.choose(rng).copied().unwrap_or("US")
}

/// Plants about 0.75% fraud orders (at least 15): account takeovers, brand-new accounts and
/// device bursts. Fraudster accounts are appended to `customers`.
pub(crate) fn plant_fraud(
    rng: &mut StdRng,
    cat: &Catalog,
    customers: &mut Vec<Cust>,
    act: &mut Activity,
) {
    let cal = &cat.cal;
    let genuine = act.orders.len();
    let n = ((genuine as f64 * 0.0075).round() as usize).max(15);
    let med = median(act.orders.iter().map(OrderSim::total_cents).collect()).max(2_000);
    let n_genuine_customers = customers.len();
    let by_cust = orders_by_customer(n_genuine_customers, &act.orders);
    let mut planted = 0usize;

    // Device bursts: 3-5 orders from one device within 10 minutes, over 1-3 fresh accounts.
    let burst_target = (n as f64 * 0.3).round() as usize;
    while planted < burst_target {
        let t0 = cal.time_in(rng, 21 * DAY, 2 * HOUR);
        let k = rng.random_range(3..=5usize);
        let device = new_device(rng);
        let ip = new_ip(rng);
        let billing_abroad = rng.random_bool(0.5);
        let accounts: Vec<usize> = (0..rng.random_range(1..=3usize))
            .map(|_| {
                let signup = t0 - between(rng, HOUR, 72 * HOUR);
                let mut c = new_customer(rng, Role::Fraudster, signup);
                c.devices = vec![(device.clone(), "web")];
                customers.push(c);
                customers.len() - 1
            })
            .collect();
        let mut offsets: Vec<i64> = (0..k).map(|_| between(rng, 0, 9 * MIN)).collect();
        offsets.sort_unstable();
        for (j, off) in offsets.into_iter().enumerate() {
            let cust = accounts[j % accounts.len()];
            let ts = t0 + off;
            let target = (med as f64 * uniform(rng, 4.0, 10.0)) as i64;
            let lines = expensive_basket(rng, cat, ts, target);
            if lines.is_empty() {
                continue;
            }
            let bill = if billing_abroad {
                foreign(rng)
            } else {
                customers[cust].country
            };
            let f = FraudOrder {
                cust,
                ts,
                lines,
                device: device.clone(),
                ip: ip.clone(),
                bill,
                kind: FraudKind::DeviceBurst,
            };
            push_fraud(rng, customers, cal.end, f, act);
            planted += 1;
        }
    }

    // Account takeovers of customers with history: 5-15x their usual basket, new device, billed abroad.
    let ato_target = n
        .saturating_sub(planted)
        .saturating_sub((n as f64 * 0.3).round() as usize);
    let mut ato = 0;
    let mut tries = 0;
    while ato < ato_target && tries < 50 * n {
        tries += 1;
        let ts = cal.time_in(rng, 21 * DAY, 2 * HOUR);
        let cust = rng.random_range(0..n_genuine_customers);
        let prior: Vec<i64> = by_cust[cust]
            .iter()
            .map(|&o| &act.orders[o])
            .filter(|o| o.ts < ts - DAY)
            .map(OrderSim::total_cents)
            .collect();
        if prior.len() < 2 {
            continue;
        }
        let usual = prior.iter().sum::<i64>() / i64::try_from(prior.len()).unwrap_or(1);
        let target = (usual as f64 * uniform(rng, 5.0, 15.0)) as i64;
        let lines = expensive_basket(rng, cat, ts, target);
        if lines.is_empty() {
            continue;
        }
        let f = FraudOrder {
            cust,
            ts,
            lines,
            device: new_device(rng),
            ip: new_ip(rng),
            bill: foreign(rng),
            kind: FraudKind::AccountTakeover,
        };
        push_fraud(rng, customers, cal.end, f, act);
        planted += 1;
        ato += 1;
    }

    // New accounts ordering within the hour of signing up.
    let mut tries = 0;
    while planted < n && tries < 50 * n {
        tries += 1;
        let ts = cal.time_in(rng, 21 * DAY, 2 * HOUR);
        let signup = ts - between(rng, 5 * MIN, 55 * MIN);
        let mut c = new_customer(rng, Role::Fraudster, signup);
        let device = c.devices[0].0.clone();
        let ip = c.ip.clone();
        let bill = if rng.random_bool(0.9) {
            foreign(rng)
        } else {
            c.country
        };
        c.devices.truncate(1);
        let target = (med as f64 * uniform(rng, 5.0, 15.0)) as i64;
        let lines = expensive_basket(rng, cat, ts, target);
        if lines.is_empty() {
            continue;
        }
        customers.push(c);
        let f = FraudOrder {
            cust: customers.len() - 1,
            ts,
            lines,
            device,
            ip,
            bill,
            kind: FraudKind::NewAccount,
        };
        push_fraud(rng, customers, cal.end, f, act);
        planted += 1;
    }
}

// ------------------------------------------------------------------------------------------------
// Reviews and planted spam

/// Genuine reviews of purchased products (~7% of paid order lines), a GENUINE moderation label
/// for some of them.
pub(crate) fn genuine_reviews(rng: &mut StdRng, cat: &Catalog, act: &mut Activity) {
    let end = cat.cal.end;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for o in &act.orders {
        if o.fraud.is_some() || o.paid.is_none() {
            continue;
        }
        for l in &o.lines {
            let p = &cat.products[l.prod];
            let penalty = if o.refunded.is_some() { 1.5 } else { 0.0 };
            let rating = (p.quality + 0.9 * normal(rng) - penalty)
                .round()
                .clamp(1.0, 5.0) as i32;
            let prob = if rating <= 2 || rating == 5 {
                0.09
            } else {
                0.05
            };
            if !rng.random_bool(prob) || !seen.insert((o.cust, l.prod)) {
                continue;
            }
            let ts = o.ts + between(rng, 3 * DAY, 25 * DAY);
            if ts >= end {
                continue;
            }
            let (title, text) =
                text::review_text(rng, p.category(), p.item, p.brand, Tone::of_rating(rating));
            let labelled_at = if rng.random_bool(0.12) {
                Some(ts + between(rng, DAY, 14 * DAY)).filter(|&x| x < end)
            } else {
                None
            };
            out.push(RevSim {
                id: String::new(),
                ts,
                cust: o.cust,
                prod: l.prod,
                rating,
                title,
                text,
                spam: None,
                labelled_at,
            });
        }
    }
    act.reviews.extend(out);
}

/// Plants about 3% spam reviews (at least 20) from fresh spammer accounts (appended to
/// `customers`); about half get a SPAM moderation label later.
pub(crate) fn plant_spam(
    rng: &mut StdRng,
    cat: &Catalog,
    customers: &mut Vec<Cust>,
    act: &mut Activity,
) {
    let cal = &cat.cal;
    let genuine = act.reviews.len();
    let n = ((genuine as f64 * 0.031).round() as usize).max(20);
    let first_spam = act.reviews.len();
    let available_at = |rng: &mut StdRng, t: i64| -> Option<usize> {
        let cands: Vec<usize> = (0..cat.products.len())
            .filter(|&p| cat.products[p].available(t))
            .collect();
        cands.choose(rng).copied()
    };
    let spammer = |rng: &mut StdRng, signup: i64, customers: &mut Vec<Cust>| -> usize {
        let mut c = new_customer(rng, Role::Spammer, signup.max(cal.start + HOUR));
        c.channel = if rng.random_bool(0.6) {
            "social"
        } else {
            c.channel
        };
        customers.push(c);
        customers.len() - 1
    };
    let push = |act: &mut Activity,
                ts: i64,
                cust: usize,
                prod: usize,
                rating: i32,
                (title, text): (String, String),
                kind: SpamKind| {
        act.reviews.push(RevSim {
            id: String::new(),
            ts,
            cust,
            prod,
            rating,
            title,
            text,
            spam: Some(kind),
            labelled_at: None,
        });
    };

    // Bursts of 5-star reviews on one product within an hour, each from a brand-new account.
    let burst_target = (n as f64 * 0.35).round() as usize;
    let mut planted = 0;
    while planted < burst_target {
        let t0 = cal.time_in(rng, 30 * DAY, 2 * HOUR);
        let Some(prod) = available_at(rng, t0) else {
            break;
        };
        let k = rng.random_range(5..=7usize);
        let mut offsets: Vec<i64> = (0..k).map(|_| between(rng, 0, 55 * MIN)).collect();
        offsets.sort_unstable();
        for off in offsets {
            let ts = t0 + off;
            let signup = ts - between(rng, 10 * MIN, 36 * HOUR);
            let cust = spammer(rng, signup, customers);
            let p = &cat.products[prod];
            let txt = text::spam_burst(rng, p.item);
            push(act, ts, cust, prod, 5, txt, SpamKind::RatingBurst);
            planted += 1;
        }
    }

    // Near-duplicate texts across products and a small pool of accounts.
    let n_dup = ((n as f64 * 0.25).round() as usize).max(3);
    let accounts: Vec<(usize, i64)> = (0..(n_dup / 2).max(2))
        .map(|_| {
            let t = cal.time_in(rng, 30 * DAY, 10 * DAY);
            let signup = t - between(rng, DAY, 30 * DAY);
            (spammer(rng, signup, customers), t)
        })
        .collect();
    let mut used = BTreeSet::new();
    for j in 0..n_dup {
        let (cust, t_acc) = accounts[j % accounts.len()];
        let ts = (t_acc
            + i64::try_from(j / accounts.len()).unwrap_or(0) * between(rng, HOUR, 3 * DAY))
        .min(cal.end - HOUR);
        let Some(prod) = (0..10)
            .filter_map(|_| available_at(rng, ts))
            .find(|p| used.insert(*p))
        else {
            continue;
        };
        let txt = text::spam_duplicate(rng, cat.products[prod].item);
        push(act, ts, cust, prod, 5, txt, SpamKind::DuplicateText);
        planted += 1;
    }

    // Promotional texts with links, on popular products.
    let n_link = ((n as f64 * 0.2).round() as usize).max(2);
    for _ in 0..n_link {
        let ts = cal.time_in(rng, 30 * DAY, HOUR);
        let w: Vec<f64> = cat
            .products
            .iter()
            .map(|p| if p.available(ts) { p.popularity } else { 0.0 })
            .collect();
        let Some(prod) = weighted(rng, &w) else {
            continue;
        };
        let signup = ts - between(rng, HOUR, 10 * DAY);
        let cust = spammer(rng, signup, customers);
        let rating = if rng.random_bool(0.6) {
            5
        } else {
            rng.random_range(1..=5)
        };
        let code = hex(rng, 6);
        let p = &cat.products[prod];
        let txt = text::spam_link(rng, p.item, p.brand, &code);
        push(act, ts, cust, prod, rating, txt, SpamKind::PromotionalLink);
        planted += 1;
    }

    // Ratings that contradict their text (5 stars on a rant, 1 star on praise): the rest, at
    // least two.
    let n_mismatch = n.saturating_sub(planted).max(2);
    for _ in 0..n_mismatch {
        let ts = cal.time_in(rng, 30 * DAY, HOUR);
        let Some(prod) = available_at(rng, ts) else {
            break;
        };
        let signup = ts - between(rng, 5 * DAY, 90 * DAY);
        let cust = spammer(rng, signup, customers);
        let p = &cat.products[prod];
        let (rating, tone) = if rng.random_bool(0.5) {
            (5, Tone::Negative)
        } else {
            (1, Tone::Positive)
        };
        let txt = text::review_text(rng, p.category(), p.item, p.brand, tone);
        push(act, ts, cust, prod, rating, txt, SpamKind::RatingMismatch);
    }

    // Moderation: about half of the spam is labelled SPAM some days later.
    let mut idx: Vec<usize> = (first_spam..act.reviews.len()).collect();
    idx.shuffle(rng);
    let half = idx.len().div_ceil(2);
    for &i in idx.iter().take(half) {
        let r = &mut act.reviews[i];
        let at = r.ts + between(rng, DAY, 10 * DAY);
        r.labelled_at = (at < cal.end).then_some(at);
    }
}

// ------------------------------------------------------------------------------------------------
// Product snapshots

/// One product snapshot: the state of a product at `ts`.
pub(crate) struct Snapshot {
    pub prod: usize,
    pub ts: i64,
    pub cents: i64,
    pub list_cents: i64,
    pub promo: bool,
    pub stock: i64,
    pub active: bool,
}

/// Snapshots per product: at creation, at each price change, promotion start and end, stock
/// count (every 3-7 weeks) and when it goes out of stock or is delisted. Stock levels follow
/// the units sold in the previous six weeks.
pub(crate) fn product_snapshots(
    rng: &mut StdRng,
    cat: &Catalog,
    orders: &[OrderSim],
) -> Vec<Snapshot> {
    let cal = &cat.cal;
    let n_days = cal.day(cal.end - 1) + 1;
    let mut units = vec![vec![0i64; n_days + 1]; cat.products.len()];
    for o in orders.iter().filter(|o| o.cancelled.is_none()) {
        for l in &o.lines {
            units[l.prod][cal.day(o.ts) + 1] += l.qty;
        }
    }
    // Prefix sums: units[p][d] = units sold before day d.
    for u in &mut units {
        for d in 1..u.len() {
            u[d] += u[d - 1];
        }
    }
    let mut out = Vec::new();
    for (pi, p) in cat.products.iter().enumerate() {
        let mut times = BTreeSet::new();
        times.insert(p.created);
        times.extend(p.prices.iter().skip(1).map(|x| x.0));
        for &w in &p.promo_weeks {
            if !p.on_promo(w - 1) {
                times.insert(w);
            }
            if !p.on_promo(w + WEEK) {
                times.insert(w + WEEK);
            }
        }
        let mut t = p.created;
        loop {
            t += between(rng, 21 * DAY, 49 * DAY);
            if t >= cal.end {
                break;
            }
            times.insert(t);
        }
        if let Some((g, _)) = p.gone {
            times.insert(g);
        }
        for ts in times.into_iter().filter(|&x| x >= p.created && x < cal.end) {
            let gone = p.gone.filter(|&(g, _)| ts >= g).map(|x| x.1);
            let d = cal.day(ts);
            let recent = units[pi][d] - units[pi][d.saturating_sub(42)];
            let stock = match gone {
                Some(_) => 0,
                // A new product is stocked up front; later counts follow recent sales.
                None if ts - p.created < 42 * DAY => between(rng, 20, 120),
                None => (recent as f64 * uniform(rng, 0.8, 2.0)) as i64 + between(rng, 3, 25),
            };
            let (cents, promo) = p.price(ts);
            out.push(Snapshot {
                prod: pi,
                ts,
                cents,
                list_cents: p.list_price(ts),
                promo,
                stock,
                active: gone != Some(Gone::Inactive),
            });
        }
    }
    out
}
