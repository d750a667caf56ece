fn main() {
    keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(cohort::cli::main(args));
}

/// glibc hands allocations above 128 KiB (a page of search results, a response body) to
/// mmap and gives freed memory back to the kernel at once, so every such request paid for
/// mapping, zeroing and unmapping pages. Larger blocks now come from the heap, and up to
/// 64 MiB of freed memory is kept for the next request.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 8 << 20);
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
