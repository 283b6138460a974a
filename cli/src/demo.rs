//! Loading the synthetic demo dataset through the feature store's gRPC API.

use std::path::Path;

use augur_demo::{DemoConfig, generate};
use augur_proto::featurestore as pb;
use indicatif::{ProgressBar, ProgressStyle};

/// Events per streamed message.
const BATCH: usize = 5_000;

/// [`load_on`] the feature store at `url` over plaintext without a token.
pub async fn load(url: &str, seed: u64, progress: bool) -> anyhow::Result<pb::IngestResponse> {
    load_on(&crate::connect::Remote::plain(url), seed, progress).await
}

/// Generates the demo dataset and ingests it; returns the ingest summary.
pub async fn load_on(
    remote: &crate::connect::Remote,
    seed: u64,
    progress: bool,
) -> anyhow::Result<pb::IngestResponse> {
    let config = DemoConfig {
        seed,
        ..DemoConfig::default()
    };
    let data = generate(&config);
    let total = data.events.len();
    let bar = if progress {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template("demo data {bar:40} {pos}/{len} events ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let resp = crate::import::ingest_on(remote, data.events, BATCH, &bar).await?;
    bar.finish_and_clear();
    println!(
        "demo: {} events accepted, {} duplicates, {} rejected ({} customers, {} products, {} planted fraud orders, {} planted spam reviews, {} churners)",
        resp.accepted,
        resp.duplicates,
        resp.rejected.len(),
        data.summary.genuine_customers.len(),
        config.products,
        data.summary.fraud_orders.len(),
        data.summary.spam_reviews.len(),
        data.summary.churned.len(),
    );
    if let Some(r) = resp.rejected.first() {
        anyhow::bail!("demo data rejected: {}: {}", r.field, r.reason);
    }
    Ok(resp)
}

/// Writes the demo dataset as JSON-lines files, one per event kind, in the format `augur import`
/// reads.
pub fn write_files(out: &Path, seed: u64) -> anyhow::Result<()> {
    let data = generate(&DemoConfig {
        seed,
        ..DemoConfig::default()
    });
    std::fs::create_dir_all(out)?;
    let mut files = std::collections::BTreeMap::new();
    for e in &data.events {
        let (kind, record) = crate::import::to_json(e)?;
        let f = match files.entry(kind) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let path = out.join(format!("{kind}s.jsonl"));
                v.insert(std::io::BufWriter::new(std::fs::File::create(path)?))
            }
        };
        use std::io::Write;
        writeln!(f, "{record}")?;
    }
    for (kind, f) in files {
        f.into_inner()
            .map_err(|e| anyhow::anyhow!("writing {kind}s.jsonl: {e}"))?;
        println!("wrote {}", out.join(format!("{kind}s.jsonl")).display());
    }
    Ok(())
}
