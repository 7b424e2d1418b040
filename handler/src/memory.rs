//! Allocator settings for the handler process.
//!
//! The handler holds a few large, short-lived buffers per invocation (the request,
//! the decoded bodies, one compressed object per route) on a handful of threads.
//! glibc's defaults suit that badly: each thread that allocates gets its own arena
//! (up to 8 × cores), and after a large buffer is freed the mmap threshold grows up
//! to 32 MiB, so later request-sized buffers come from the arenas and stay resident
//! as fragmentation. Measured with `hub2lake bench` (BENCHMARKS.md): peak RSS 83 MB
//! with the defaults, 22 MB with two arenas and a fixed 128 KiB mmap/trim threshold,
//! at the same throughput within noise. One arena (issue 16) took the peak from
//! 21.7 to 19.1-19.4 MB with two batches in flight, again at the same CPU: every
//! thread's small allocations are served from its own tcache without the arena
//! lock, and the large ones are mmapped, so one arena is rarely contended.

/// What [`tune_allocator`] did, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocatorTuning {
    /// Arena count and mmap/trim thresholds set.
    Applied { arenas: i32, mmap_threshold: i32 },
    /// The operator configured glibc malloc through the environment: left alone.
    LeftToEnvironment(&'static str),
    /// Not glibc (musl, another OS): nothing to do.
    NotApplicable,
}

/// Largest allocation served from the heap; larger ones are mmapped and given back
/// to the OS when freed.
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;
/// Malloc arenas (glibc's default is 8 per core).
pub const ARENAS: i32 = 1;

/// Environment variables through which an operator tunes glibc malloc; if one is set
/// we do not override it.
const MALLOC_ENV: [&str; 4] = [
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
];

/// Bounds glibc's arenas and fixes its mmap and trim thresholds. Call first in
/// `main`, before any thread starts.
pub fn tune_allocator() -> AllocatorTuning {
    if let Some(var) = MALLOC_ENV.into_iter().find(|v| std::env::var_os(v).is_some()) {
        return AllocatorTuning::LeftToEnvironment(var);
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> AllocatorTuning {
    // SAFETY: mallopt only changes allocator parameters; it is called before other
    // threads exist, and a refused parameter (return 0) leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
    AllocatorTuning::Applied {
        arenas: ARENAS,
        mmap_threshold: MMAP_THRESHOLD_BYTES,
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> AllocatorTuning {
    AllocatorTuning::NotApplicable
}
