//! The engine's worker threads: a capped, fork-safe, bounded cache of rayon pools, and a batch map
//! that stops between chunks when asked (Ctrl-C).
//!
//! * **Cap**: at most [`MAX_THREADS`] threads per call; a larger request is an error, never a
//!   thread bomb.
//! * **Fork**: rayon's global pool does not survive `fork()` (the child inherits the pool object but
//!   not its threads, so work sent there waits forever). The engine never uses the global pool: each
//!   cached pool remembers the process id that built it, and a child process builds its own. The
//!   parent's pool objects are leaked in the child, not dropped: dropping would wake threads that do
//!   not exist there.
//! * **Cache**: at most [`CACHED_POOLS`] pools are kept (least recently used goes first), so calls
//!   with many distinct `threads=` values do not pile up OS threads.
//! * **Interrupts**: [`par_map_checked`] works in chunks of [`CHECK_EVERY`] items and calls the
//!   caller's `check` before each, so a pending signal stops a long batch within one chunk.

use rayon::prelude::*;
use std::sync::{Arc, Mutex, OnceLock};

/// Most threads one call may ask for (documented in `mrgfast._core.MAX_THREADS`).
pub const MAX_THREADS: usize = 256;
/// Pools kept alive between calls.
pub const CACHED_POOLS: usize = 4;
/// Items processed between two `check` calls (a few milliseconds of labelling on one core).
pub const CHECK_EVERY: usize = 4096;

/// Why a batch did not finish.
#[derive(Debug)]
pub enum MapError<E> {
    /// Bad thread count, or the OS refused the threads.
    Threads(String),
    /// The caller's `check` asked to stop (its error is passed on).
    Stopped(E),
}

impl<E> From<String> for MapError<E> {
    fn from(s: String) -> Self {
        MapError::Threads(s)
    }
}

/// The number of threads a call runs on: `None` = every core (capped at [`MAX_THREADS`]).
pub fn resolve_threads(threads: Option<usize>) -> Result<usize, String> {
    match threads {
        None => Ok(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_THREADS)),
        Some(0) => Err("threads must be at least 1 (or None for all cores)".to_string()),
        Some(n) if n > MAX_THREADS => Err(format!(
            "threads={n} is more than the engine allows ({MAX_THREADS}); use None for every core"
        )),
        Some(n) => Ok(n),
    }
}

struct Cached {
    pid: u32,
    threads: usize,
    pool: Arc<rayon::ThreadPool>,
}

fn cache() -> &'static Mutex<Vec<Cached>> {
    static POOLS: OnceLock<Mutex<Vec<Cached>>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(Vec::new()))
}

/// A pool of `threads` threads that belongs to this process (most recently used kept last).
fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, String> {
    let pid = std::process::id();
    let mut guard = cache().lock().unwrap_or_else(|e| e.into_inner());
    if guard.iter().any(|c| c.pid != pid) {
        // Forked: the parent's pools have no threads here. Leak them (see the module doc).
        for stale in guard.drain(..).collect::<Vec<_>>() {
            if stale.pid == pid {
                guard.push(stale);
            } else {
                std::mem::forget(stale.pool);
            }
        }
    }
    if let Some(i) = guard.iter().position(|c| c.threads == threads) {
        let hit = guard.remove(i);
        let p = hit.pool.clone();
        guard.push(hit);
        return Ok(p);
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("mrgfast-{i}"))
        .build()
        .map_err(|e| format!("could not start {threads} threads: {e}"))?;
    let p = Arc::new(p);
    if guard.len() >= CACHED_POOLS {
        guard.remove(0); // its threads end once no running call holds it
    }
    guard.push(Cached {
        pid,
        threads,
        pool: p.clone(),
    });
    Ok(p)
}

/// Pools alive in this process (for tests).
pub fn cached_pools() -> usize {
    let pid = std::process::id();
    let guard = cache().lock().unwrap_or_else(|e| e.into_inner());
    guard.iter().filter(|c| c.pid == pid).count()
}

/// `f` over `items` on `threads` threads (None = every core, 1 = the caller's thread), results in
/// order. `check` runs before every chunk of [`CHECK_EVERY`] items; its error stops the batch.
pub fn par_map_checked<T, R, F, E, C>(
    items: &[T],
    threads: Option<usize>,
    f: F,
    mut check: C,
) -> Result<Vec<R>, MapError<E>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync + Send,
    C: FnMut() -> Result<(), E>,
{
    let n = resolve_threads(threads)?;
    let mut out = Vec::with_capacity(items.len());
    if n == 1 || items.len() < 2 {
        for chunk in items.chunks(CHECK_EVERY) {
            check().map_err(MapError::Stopped)?;
            out.extend(chunk.iter().map(&f));
        }
        return Ok(out);
    }
    let p = pool(n)?;
    for chunk in items.chunks(CHECK_EVERY.max(64 * n)) {
        check().map_err(MapError::Stopped)?;
        p.install(|| out.par_extend(chunk.par_iter().with_min_len(16).map(&f)));
    }
    Ok(out)
}

/// The Python side of the pool: kept here so the bindings in `python.rs` stay a thin layer.
#[cfg(feature = "python")]
mod py {
    use super::{par_map_checked, MapError};
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;

    /// `f` over `items` with the GIL released; on Python's main thread a pending signal (Ctrl-C) is
    /// honoured between chunks of `pool::CHECK_EVERY` items, so a long batch stops promptly.
    pub fn par_map_py<T, R, F>(
        py: Python<'_>,
        items: &[T],
        threads: Option<usize>,
        f: F,
    ) -> PyResult<Vec<R>>
    where
        T: Sync,
        R: Send,
        F: Fn(&T) -> R + Sync + Send,
    {
        let main = is_main_thread(py)?;
        let r = py.detach(|| {
            par_map_checked(items, threads, f, || {
                if main {
                    Python::attach(|py| py.check_signals())
                } else {
                    Ok(())
                }
            })
        });
        r.map_err(|e| match e {
            MapError::Threads(s) => PyValueError::new_err(s),
            MapError::Stopped(err) => err,
        })
    }

    fn is_main_thread(py: Python<'_>) -> PyResult<bool> {
        let threading = py.import("threading")?;
        Ok(threading
            .call_method0("main_thread")?
            .is(&threading.call_method0("current_thread")?))
    }
}

#[cfg(feature = "python")]
pub use py::par_map_py;

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Result<(), ()> {
        Ok(())
    }

    #[test]
    fn caps_and_refuses_zero() {
        assert!(resolve_threads(Some(0)).is_err());
        assert!(resolve_threads(Some(MAX_THREADS + 1)).is_err());
        assert_eq!(resolve_threads(Some(MAX_THREADS)).unwrap(), MAX_THREADS);
        let all = resolve_threads(None).unwrap();
        assert!((1..=MAX_THREADS).contains(&all));
    }

    #[test]
    fn cache_is_bounded() {
        let xs: Vec<u64> = (0..100).collect();
        for n in 2..(2 + CACHED_POOLS + 3) {
            par_map_checked(&xs, Some(n), |x| x + 1, never).unwrap();
        }
        assert!(cached_pools() <= CACHED_POOLS);
    }

    #[test]
    fn check_stops_between_chunks() {
        let xs: Vec<u64> = (0..(CHECK_EVERY as u64 * 300)).collect();
        let mut calls = 0;
        let r = par_map_checked(
            &xs,
            Some(2),
            |x| *x,
            || {
                calls += 1;
                if calls == 2 {
                    Err("stop")
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(r, Err(MapError::Stopped("stop"))));
        assert_eq!(calls, 2);
    }
}
