//! Parallel map over a batch on a rayon pool sized by the caller; pools are built once per size.

use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, String> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = pools.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = guard.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("mrgfast-{i}"))
        .build()
        .map_err(|e| format!("could not start {threads} threads: {e}"))?;
    let p = Arc::new(p);
    guard.insert(threads, p.clone());
    Ok(p)
}

/// `threads`: None = all cores (rayon's global pool), Some(1) = this thread only, Some(n) = n threads.
pub fn par_map<T, R, F>(items: &[T], threads: Option<usize>, f: F) -> Result<Vec<R>, String>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync + Send,
{
    match threads {
        Some(0) => Err("threads must be at least 1 (or None for all cores)".to_string()),
        Some(1) => Ok(items.iter().map(f).collect()),
        _ if items.len() < 2 => Ok(items.iter().map(f).collect()),
        None => Ok(items.par_iter().with_min_len(16).map(f).collect()),
        Some(n) => {
            let p = pool(n)?;
            Ok(p.install(|| items.par_iter().with_min_len(16).map(f).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_result_on_any_thread_count() {
        let xs: Vec<u64> = (0..1000).collect();
        let one = par_map(&xs, Some(1), |x| x * x).unwrap();
        let two = par_map(&xs, Some(2), |x| x * x).unwrap();
        let all = par_map(&xs, None, |x| x * x).unwrap();
        assert_eq!(one, two);
        assert_eq!(one, all);
        assert!(par_map(&xs, Some(0), |x| *x).is_err());
    }
}
