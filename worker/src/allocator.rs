//! The C allocator's settings for a worker process.
//!
//! libtorch allocates every CPU tensor with `malloc`. glibc serves blocks above its mmap
//! threshold (dynamic, at most 32 MiB) with fresh `mmap`s and returns freed memory above
//! its trim threshold to the kernel, so a batch's tensors of a few MB each are mapped,
//! zeroed by the kernel page by page and unmapped again every batch. On the tiny CNN at
//! crop 64 (2 cores) page faults took a fifth of the CPU, and keeping those blocks in the
//! heap made `hint extract` 13–30% faster end to end (one run each, side by side, 2,000
//! JPEGs; `GLIBC_TUNABLES` with the same values). The cost is resident memory: up to
//! [`TRIM_THRESHOLD`] of freed heap stays with the process.

/// Blocks at least this large are still mapped on their own (a batch of early-layer
/// activations on a CPU is hundreds of MB: those are rare enough to map).
pub const MMAP_THRESHOLD: i32 = 64 << 20;
/// Freed memory at the heap's top kept for reuse before it goes back to the kernel.
pub const TRIM_THRESHOLD: i32 = 256 << 20;

/// Keeps a batch's freed tensors in the heap for the next batch. Call once, at the start
/// of the process, before other threads allocate. No-op outside glibc.
pub fn keep_freed_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before other threads
    // start and takes plain integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
