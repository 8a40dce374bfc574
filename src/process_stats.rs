//! The process's own figures, read from Linux's `/proc/self` when `/metrics`
//! is scraped: CPU time, memory, threads, file descriptors, start time.

/// What `/proc/self` says of the process.
#[derive(Debug, Clone, Default)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
    /// The main thread's stack and the stacks reserved for the others.
    pub stack_bytes: u64,
}

/// Each thread shmesh starts (the runtime's workers and blocking threads)
/// reserves this much stack: Rust's and tokio's default.
const THREAD_STACK_BYTES: u64 = 2 << 20;

/// The figures now; `None` where `/proc` cannot be read (not Linux).
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // proc(5) numbers fields from 1 with the pid; `rest` starts at field 3.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let threads = field(20)?;
    let start_ticks = field(22)? as f64;
    let boot = boot_time()?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let main_stack = status
        .lines()
        .find_map(|l| l.strip_prefix("VmStk:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        threads,
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        max_fds: rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft),
        start_time_seconds: boot + start_ticks / ticks,
        stack_bytes: main_stack + threads.saturating_sub(1) * THREAD_STACK_BYTES,
    })
}

/// When the machine booted, in seconds since the Unix epoch.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime as f64)
}

/// Tasks alive in the async runtime this is called from (0 outside one).
pub fn runtime_tasks() -> usize {
    tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn unix_now() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    }

    #[test]
    fn the_process_reads_itself() {
        let p = read().expect("/proc/self is readable on Linux");
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.threads >= 1);
        assert!(p.open_fds >= 3, "stdin, stdout, stderr at least");
        assert!(p.cpu_seconds >= 0.0);
        // Started before now, and after the machine booted.
        assert!(p.start_time_seconds <= unix_now() + 1.0);
        assert!(p.start_time_seconds > boot_time().unwrap() - 1.0);
    }
}
