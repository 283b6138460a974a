//! Times the default training pipeline on the demo dataset (what `augur up --demo` trains),
//! without the feature store: orders become purchases, interactions keep their kind.
use augur_proto::featurestore as fs;

fn main() -> anyhow::Result<()> {
    let data = augur_demo::generate(&augur_demo::DemoConfig::default());
    let mut xs = Vec::new();
    for e in data.events {
        match e.payload {
            Some(fs::event::Payload::Order(o)) => {
                for l in o.lines {
                    xs.push(fs::Interaction {
                        customer_id: o.customer_id.clone(),
                        sku: l.sku,
                        kind: fs::InteractionKind::Purchase as i32,
                        ts: o.ts,
                        ..Default::default()
                    });
                }
            }
            Some(fs::event::Payload::Interaction(i)) => xs.push(i),
            _ => {}
        }
    }
    let (raw, _) = augur_recommendation::service::to_raw(
        &xs,
        &augur_recommendation::service::default_kind_weights(),
    );
    let d = augur_recommendation::data::Dataset::from_raw(&raw);
    println!(
        "{} interactions, {} usable, {} customers, {} products",
        xs.len(),
        raw.len(),
        d.users.len(),
        d.n_items()
    );
    let t = std::time::Instant::now();
    let f = augur_recommendation::train::fit(
        &d,
        &augur_recommendation::train::TrainOptions::default(),
        &mut |_, _, _| {},
    )?;
    println!(
        "trained in {:.1}s: {} validation {:?}",
        t.elapsed().as_secs_f64(),
        f.blend.describe(),
        f.validation.blend
    );
    for (k, v) in &f.validation.components {
        println!("  {k}: ndcg@10 {:.4}", v.ndcg10);
    }
    Ok(())
}
