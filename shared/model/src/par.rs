//! Work spread over the cores with scoped threads (training loops of the model services).

/// The worker threads to use: the available parallelism, at most 16.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .clamp(1, 16)
}

/// Runs `f(i)` for every `i < n` on all cores (contiguous ranges of `i` per thread) and
/// collects the results in order, so they do not depend on the number of cores. A panic in `f`
/// is raised again here.
pub fn par_map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let chunk = n.div_ceil(threads()).max(1);
    if chunk >= n {
        return (0..n).map(f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                s.spawn(move || (start..(start + chunk).min(n)).map(f).collect::<Vec<T>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order() {
        assert_eq!(par_map(0, |i| i), Vec::<usize>::new());
        assert_eq!(par_map(1, |i| i * 2), vec![0]);
        let n = 3 * threads() + 1;
        assert_eq!(
            par_map(n, |i| i * i),
            (0..n).map(|i| i * i).collect::<Vec<_>>()
        );
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panic_reaches_the_caller() {
        // Enough items for several threads where there are several cores.
        par_map(64, |i| if i == 40 { panic!("boom") } else { i });
    }
}
