//! CPU time and resident memory of this process, for the benchmark binaries.
#![allow(unsafe_code)] // getrusage and sysconf through libc

/// User + system CPU time of this process so far, in milliseconds.
pub fn cpu_ms() -> f64 {
    // SAFETY: `rusage` is plain integers, for which all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass.
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

/// utime + stime of process `pid` so far, in seconds (0 if unknown).
#[allow(dead_code)] // each benchmark binary compiles this module; not all of them use it
pub fn process_cpu_seconds(pid: u32) -> f64 {
    process_cpu_ticks(pid) as f64 / clock_ticks_per_second()
}

/// utime + stime of process `pid` so far, in clock ticks (0 if unknown).
#[allow(dead_code)]
pub fn process_cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ticks(11) + ticks(12)
}

/// The unit of `/proc/<pid>/stat` CPU times.
#[allow(dead_code)]
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}
