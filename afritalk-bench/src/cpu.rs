//! Where the machine's CPU went during a run's measured window, from `/proc`.
//!
//! Latency on a shared virtual machine moves with what the neighbours do: the
//! same build gave a p50 of 0.7 ms one morning and 6 ms on a day when the
//! hypervisor took a quarter of the CPU (steal). CPU time per message moves
//! far less, so the summary reports both: the machine's split (busy, iowait,
//! steal) and what each side (Postgres, Redis, the server, this tool) spent
//! per measured message.

use std::collections::BTreeMap;

/// The process names counted as one group each, besides the server and this tool.
const GROUPS: [&str; 2] = ["postgres", "redis-server"];

/// `/proc/stat`'s tick counters are in USER_HZ, which Linux fixes at 100 for
/// user space on every architecture it exposes `/proc` to.
const TICKS_PER_SECOND: f64 = 100.0;

/// The machine's CPU counters and the processes' CPU times at one moment.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    machine: MachineTicks,
    /// Ticks by group: `GROUPS`, `server`, `this tool`.
    groups: BTreeMap<String, u64>,
}

/// The first line of `/proc/stat`, in ticks summed over all CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct MachineTicks {
    busy: u64,
    idle: u64,
    iowait: u64,
    steal: u64,
}

impl MachineTicks {
    fn total(&self) -> u64 {
        self.busy + self.idle + self.iowait + self.steal
    }
}

impl CpuSnapshot {
    /// Reads `/proc` now; `servers` are the server processes' ids.
    pub fn take(servers: &[u32]) -> Self {
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_machine(&s))
            .unwrap_or_default();
        let mut groups = BTreeMap::new();
        let own = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self { machine, groups };
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((name, ticks)) = parse_process(&stat) else {
                continue;
            };
            let group = if pid == own {
                "this tool"
            } else if servers.contains(&pid) {
                "server"
            } else if let Some(group) = GROUPS.iter().find(|g| **g == name) {
                group
            } else {
                continue;
            };
            *groups.entry(group.to_owned()).or_insert(0) += ticks;
        }
        Self { machine, groups }
    }

    /// What was spent between `self` (the earlier snapshot) and `later`, for
    /// `messages` messages.
    pub fn until(&self, later: &CpuSnapshot, messages: u64) -> CpuUse {
        let d = |a: u64, b: u64| b.saturating_sub(a);
        let machine = MachineTicks {
            busy: d(self.machine.busy, later.machine.busy),
            idle: d(self.machine.idle, later.machine.idle),
            iowait: d(self.machine.iowait, later.machine.iowait),
            steal: d(self.machine.steal, later.machine.steal),
        };
        let per_message_us =
            |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1e6 / messages.max(1) as f64;
        let mut per_message = Vec::new();
        for (group, after) in &later.groups {
            // A process that started during the window counts from zero; one
            // that ended took its time with it (the server and its pool's
            // Postgres backends live through a run).
            let before = self.groups.get(group).copied().unwrap_or(0);
            let spent = d(before, *after);
            if spent > 0 {
                per_message.push((group.clone(), per_message_us(spent)));
            }
        }
        per_message.sort_by(|a, b| b.1.total_cmp(&a.1));
        per_message.push(("whole machine".into(), per_message_us(machine.busy)));
        CpuUse {
            machine,
            per_message,
        }
    }
}

/// CPU spent over a window.
#[derive(Debug, Clone)]
pub struct CpuUse {
    machine: MachineTicks,
    /// Microseconds of CPU per message, by group, largest first, then the
    /// whole machine's busy time.
    per_message: Vec<(String, f64)>,
}

impl CpuUse {
    /// The machine's split, as percentages of all its CPUs' time.
    pub fn machine_line(&self) -> String {
        let total = self.machine.total().max(1) as f64;
        let pct = |ticks: u64| 100.0 * ticks as f64 / total;
        format!(
            "busy {:.1}%, idle {:.1}%, iowait {:.1}%, steal {:.1}% (taken by the hypervisor)",
            pct(self.machine.busy),
            pct(self.machine.idle),
            pct(self.machine.iowait),
            pct(self.machine.steal)
        )
    }

    /// CPU time per message by group.
    pub fn per_message_line(&self) -> String {
        self.per_message
            .iter()
            .map(|(group, us)| format!("{group} {us:.0} µs"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal….
fn parse_machine(stat: &str) -> Option<MachineTicks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(MachineTicks {
        busy: field(0) + field(1) + field(2) + field(5) + field(6),
        idle: field(3),
        iowait: field(4),
        steal: field(7),
    })
}

/// The name and user + system ticks of a `/proc/{pid}/stat` line. The name
/// is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_process(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    // After the name: state, ppid, pgrp, session, tty, tpgid, flags, minflt,
    // cminflt, majflt, cmajflt, then utime and stime.
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_machine_line_splits_busy_idle_iowait_and_steal() {
        let stat = "cpu  100 5 40 800 20 3 7 25 0 0\ncpu0 50 2 20 400 10 1 3 12 0 0\n";
        assert_eq!(
            parse_machine(stat),
            Some(MachineTicks {
                busy: 155,
                idle: 800,
                iowait: 20,
                steal: 25
            })
        );
        assert_eq!(parse_machine("intr 1 2 3\n"), None);
    }

    #[test]
    fn a_process_name_with_spaces_and_parentheses_is_read_whole() {
        let stat =
            "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194304 120 0 0 0 731 96 0 0 20 0 9 0";
        assert_eq!(parse_process(stat), Some(("tokio (rt) worker", 827)));
        assert_eq!(parse_process("4242 (postgres) S 1 2"), None);
    }

    #[test]
    fn a_window_reports_each_group_per_message_and_the_machine_split() {
        let mut before = CpuSnapshot {
            machine: MachineTicks {
                busy: 1_000,
                idle: 1_000,
                iowait: 0,
                steal: 0,
            },
            groups: BTreeMap::new(),
        };
        before.groups.insert("postgres".into(), 500);
        let mut after = before.clone();
        after.machine = MachineTicks {
            busy: 1_300,
            idle: 1_050,
            iowait: 10,
            steal: 40,
        };
        // 200 ticks = 2 s of Postgres and 1 s of a server that started
        // during the window, over 1,000 messages.
        after.groups.insert("postgres".into(), 700);
        after.groups.insert("server".into(), 100);
        let used = before.until(&after, 1_000);
        assert_eq!(
            used.per_message_line(),
            "postgres 2000 µs, server 1000 µs, whole machine 3000 µs"
        );
        assert_eq!(
            used.machine_line(),
            "busy 75.0%, idle 12.5%, iowait 2.5%, steal 10.0% (taken by the hypervisor)"
        );
    }

    #[test]
    fn a_snapshot_of_this_machine_counts_this_process() {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(start.elapsed());
        }
        let now = CpuSnapshot::take(&[]);
        assert!(now.machine.total() > 0);
        assert!(now.groups.contains_key("this tool"), "{now:?}");
    }
}
