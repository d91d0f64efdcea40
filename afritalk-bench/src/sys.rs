//! The operating-system side: the open-files limit, process memory from
//! `/proc`, the load average, and a precise timer for the send schedule.

use std::num::NonZeroU64;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises this process's open-files soft limit to its hard limit (every socket
/// is a file descriptor). Returns `(before, after)`.
pub fn raise_nofile() -> (Option<u64>, Option<u64>) {
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            },
        );
    }
    (before.current, getrlimit(Resource::Nofile).current)
}

/// Asks the kernel to wake this thread's sleeps with 1 ns of slack instead of
/// the default 50 µs, so that the send timetable is kept precisely.
pub fn precise_timers() {
    let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
}

/// A field in KiB of `/proc/{pid}/status` (`VmRSS`, `VmHWM`…) of process `pid`
/// (`self` for this one).
pub fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` shows them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The number of CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn status_fields_parse() {
        let status = "Name:\tafritalk\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert!(status_kib("self", "VmRSS").unwrap() > 0);
    }
}
