//! CPU time and resident memory of this process, for the benchmark binaries.

/// User + system CPU time of this process so far, in milliseconds.
pub fn cpu_ms() -> f64 {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_utime.tv_sec as f64 * 1e3
        + ru.ru_utime.tv_usec as f64 / 1e3
        + ru.ru_stime.tv_sec as f64 * 1e3
        + ru.ru_stime.tv_usec as f64 / 1e3
}

/// Resident memory of this process in KiB (`VmRSS`), NaN if unknown.
#[allow(dead_code)] // each benchmark binary compiles this module; not all of them use it
pub fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(f64::NAN)
}
