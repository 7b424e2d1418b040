//! How many threads may encode at once: a batch encodes on its own thread and borrows
//! cores no other batch is using, so one batch in flight uses every core while
//! several batches in flight do not oversubscribe them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Threads encoding objects right now, across every batch in flight.
static ENCODING: AtomicUsize = AtomicUsize::new(0);

/// Cores this process may use (cgroup quotas included, as `std` reads them).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The encoding threads one batch holds: its own, plus `extra` borrowed idle cores.
/// Dropping it gives them all back.
#[derive(Debug)]
pub struct EncodingThreads {
    counter: &'static AtomicUsize,
    extra: usize,
}

impl EncodingThreads {
    /// Counts the calling thread, then borrows up to `wanted_extra` more threads while
    /// fewer threads than cores are encoding.
    pub fn claim(wanted_extra: usize) -> Self {
        Self::claim_with(&ENCODING, cores(), wanted_extra)
    }

    fn claim_with(counter: &'static AtomicUsize, cores: usize, wanted_extra: usize) -> Self {
        let mut busy = counter.fetch_add(1, Ordering::AcqRel) + 1;
        loop {
            let extra = wanted_extra.min(cores.saturating_sub(busy));
            if extra == 0 {
                return Self { counter, extra: 0 };
            }
            match counter.compare_exchange_weak(busy, busy + extra, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Self { counter, extra },
                Err(now) => busy = now,
            }
        }
    }

    /// Threads borrowed besides the caller's own.
    pub fn extra(&self) -> usize {
        self.extra
    }
}

impl Drop for EncodingThreads {
    fn drop(&mut self) {
        self.counter.fetch_sub(1 + self.extra, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A counter of its own: other tests encode batches meanwhile.
    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn batches_borrow_only_idle_cores_and_give_them_back() {
        let claim = |cores, wanted| EncodingThreads::claim_with(&COUNTER, cores, wanted);
        let first = claim(4, 10);
        assert_eq!(first.extra(), 3, "alone, a batch takes every core");
        let second = claim(4, 10);
        assert_eq!(
            second.extra(),
            0,
            "all cores busy: the second batch encodes on its own thread"
        );
        drop(first);
        let third = claim(4, 1);
        assert_eq!(third.extra(), 1, "never more than asked for");
        drop((second, third));
        assert_eq!(COUNTER.load(Ordering::Acquire), 0);
        assert_eq!(claim(1, 5).extra(), 0, "one core: no helpers");
    }
}
