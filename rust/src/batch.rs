//! Parallel map over a batch on the engine's pools (`pool.rs`: capped, fork-safe, bounded cache).

use crate::pool::{par_map_checked, MapError};

/// `threads`: None = every core, Some(1) = this thread only, Some(n) = n threads (at most
/// `pool::MAX_THREADS`). Never interrupted; Python callers use `pool::par_map_checked`.
pub fn par_map<T, R, F>(items: &[T], threads: Option<usize>, f: F) -> Result<Vec<R>, String>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync + Send,
{
    par_map_checked(items, threads, f, || Ok::<(), ()>(())).map_err(|e| match e {
        MapError::Threads(s) => s,
        MapError::Stopped(()) => unreachable!("the check never stops"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_result_on_any_thread_count() {
        let xs: Vec<u64> = (0..10_000).collect();
        let one = par_map(&xs, Some(1), |x| x * x).unwrap();
        let two = par_map(&xs, Some(2), |x| x * x).unwrap();
        let all = par_map(&xs, None, |x| x * x).unwrap();
        assert_eq!(one, two);
        assert_eq!(one, all);
        assert!(par_map(&xs, Some(0), |x| *x).is_err());
    }
}
