//! The bench process's own CPU time (whole and per thread name) and memory, from /proc,
//! for the in-process scenarios.

use std::collections::BTreeMap;
use std::time::Duration;

/// sysconf(_SC_CLK_TCK) is 100 on Linux x86_64 and aarch64.
const CLOCK_TICKS: u64 = 100;

/// A `Vm*:` line of /proc/self/status, in KiB.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (`echo 5 > /proc/self/clear_refs`), so a later
/// VmHWM is the peak of what followed. False when the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// User + system CPU time of the whole process so far.
pub fn process_cpu() -> Duration {
    stat_cpu("/proc/self/stat").map_or(Duration::ZERO, |(_, cpu)| cpu)
}

/// CPU time of the threads sharing one name (`comm`, cut to 15 bytes by the kernel).
#[derive(Debug, Clone)]
pub struct ThreadCpu {
    pub name: String,
    pub threads: usize,
    pub cpu: Duration,
}

/// Every live thread's CPU time so far, by thread id.
pub fn thread_cpu() -> BTreeMap<u64, (String, Duration)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return BTreeMap::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let stat = task.path().join("stat");
            Some((tid, stat_cpu(stat.to_str()?)?))
        })
        .collect()
}

/// What each thread name used between two [`thread_cpu`] readings, busiest first.
/// Threads that ended in between are missing (their time is in [`process_cpu`]).
pub fn thread_cpu_delta(
    before: &BTreeMap<u64, (String, Duration)>,
    after: &BTreeMap<u64, (String, Duration)>,
) -> Vec<ThreadCpu> {
    let mut by_name: BTreeMap<&str, ThreadCpu> = BTreeMap::new();
    for (tid, (name, cpu)) in after {
        let earlier = before.get(tid).map_or(Duration::ZERO, |(_, cpu)| *cpu);
        let used = cpu.saturating_sub(earlier);
        let entry = by_name.entry(name).or_insert_with(|| ThreadCpu {
            name: name.clone(),
            threads: 0,
            cpu: Duration::ZERO,
        });
        entry.threads += 1;
        entry.cpu += used;
    }
    let mut threads: Vec<ThreadCpu> = by_name.into_values().filter(|t| !t.cpu.is_zero()).collect();
    threads.sort_by_key(|t| std::cmp::Reverse(t.cpu));
    threads
}

/// The command name and utime + stime of a `stat` file.
fn stat_cpu(path: &str) -> Option<(String, Duration)> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The name is in parentheses and may hold spaces or parentheses itself.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after ')'.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let total = ticks(11)? + ticks(12)?;
    Some((name, Duration::from_millis(total * 1000 / CLOCK_TICKS)))
}
