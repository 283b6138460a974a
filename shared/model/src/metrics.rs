//! Binary-classification metrics used by the churn and risk benchmarks and validation splits.
//! Labels are `true` for the positive class. Non-finite scores are treated as the lowest score.

fn sorted_desc(scores: &[f64], labels: &[bool]) -> Vec<(f64, bool)> {
    assert_eq!(
        scores.len(),
        labels.len(),
        "scores and labels differ in length"
    );
    let mut v: Vec<(f64, bool)> = scores
        .iter()
        .map(|&s| if s.is_finite() { s } else { f64::NEG_INFINITY })
        .zip(labels.iter().copied())
        .collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0));
    v
}

/// Area under the ROC curve, ties counted as one half (Mann-Whitney). `None` without both classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let v = sorted_desc(scores, labels);
    let pos = v.iter().filter(|x| x.1).count() as f64;
    let neg = v.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // Sum over positives of the negatives ranked below them, groups of ties split evenly.
    let mut area = 0.0;
    let mut neg_above = 0.0;
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        let (mut p, mut n) = (0.0, 0.0);
        while j < v.len() && v[j].0 == v[i].0 {
            if v[j].1 {
                p += 1.0
            } else {
                n += 1.0
            }
            j += 1;
        }
        area += p * (neg - neg_above - n) + p * n / 2.0;
        neg_above += n;
        i = j;
    }
    Some(area / (pos * neg))
}

/// Average precision (the step-wise area under the precision-recall curve, as scikit-learn's
/// `average_precision_score`). `None` without positives.
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let v = sorted_desc(scores, labels);
    let pos = v.iter().filter(|x| x.1).count() as f64;
    if pos == 0.0 {
        return None;
    }
    let (mut tp, mut seen, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            if v[j].1 {
                tp += 1.0;
            }
            seen += 1.0;
            j += 1;
        }
        let recall = tp / pos;
        ap += (recall - last_recall) * (tp / seen);
        last_recall = recall;
        i = j;
    }
    Some(ap)
}

/// Mean squared error of probabilities against 0/1 outcomes.
pub fn brier(probs: &[f64], labels: &[bool]) -> f64 {
    assert_eq!(probs.len(), labels.len());
    if probs.is_empty() {
        return f64::NAN;
    }
    probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p - if y { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / probs.len() as f64
}

/// Mean negative log-likelihood, probabilities clipped to [1e-15, 1 - 1e-15].
pub fn log_loss(probs: &[f64], labels: &[bool]) -> f64 {
    assert_eq!(probs.len(), labels.len());
    probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            -(if y { p.ln() } else { (1.0 - p).ln() })
        })
        .sum::<f64>()
        / probs.len().max(1) as f64
}

/// F1 of the positive class when predicting positive at `score >= threshold`.
pub fn f1_at(scores: &[f64], labels: &[bool], threshold: f64) -> f64 {
    let (mut tp, mut fp, mut fne) = (0.0, 0.0, 0.0);
    for (&s, &y) in scores.iter().zip(labels) {
        match (s >= threshold, y) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fne += 1.0,
            _ => {}
        }
    }
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fne)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        // scikit-learn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75,
        // average_precision_score(...) = 0.8333
        let y = [false, false, true, true];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert!((roc_auc(&s, &y).unwrap() - 0.75).abs() < 1e-12);
        assert!((pr_auc(&s, &y).unwrap() - 0.833_333_333).abs() < 1e-6);
        assert!((brier(&[1.0, 0.0], &[true, true]) - 0.5).abs() < 1e-12);
        assert!(roc_auc(&s, &[true; 4]).is_none());
        assert!((roc_auc(&[0.5; 4], &y).unwrap() - 0.5).abs() < 1e-12);
        assert!((f1_at(&s, &y, 0.35) - 0.8).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn auc_is_rank_invariant_and_flips(s in prop::collection::vec(0.0f64..1.0, 2..60), seed in any::<u64>()) {
            let y: Vec<bool> = s.iter().enumerate().map(|(i, _)| (seed >> (i % 64)) & 1 == 1).collect();
            if let Some(a) = roc_auc(&s, &y) {
                let t: Vec<f64> = s.iter().map(|x| x * 3.0 + 1.0).collect();
                prop_assert!((roc_auc(&t, &y).unwrap() - a).abs() < 1e-9);
                let n: Vec<f64> = s.iter().map(|x| -x).collect();
                prop_assert!((roc_auc(&n, &y).unwrap() - (1.0 - a)).abs() < 1e-9);
                prop_assert!((0.0..=1.0).contains(&a));
            }
        }
    }
}
