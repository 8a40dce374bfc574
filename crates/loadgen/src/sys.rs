//! What the simulator needs from the operating system: a file-descriptor
//! limit big enough for one socket per client, process memory and CPU read
//! from `/proc` (its own and the control plane's), and the range of loopback
//! source addresses connections are spread over.

use std::net::{IpAddr, Ipv4Addr};

pub use shmesh::fd_limit::{raise_fd_limit, FdLimit};

/// The simulator's allocator: every client receives messages of up to
/// megabytes into fresh buffers, and with glibc's allocator (even told to
/// keep freed memory) a quarter of its CPU went to the kernel faulting the
/// same pages in again.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps freed memory instead of handing it back to the kernel (a negative
/// purge delay never purges), so buffers are reused without page faults. The
/// simulator's peak RSS is what it is either way.
pub fn keep_freed_memory() {
    shmesh::allocator::set_purge_delay(-1);
}

/// Memory and CPU of one process, from `/proc/PID/status` and `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcSample {
    /// Resident set size (VmRSS), KiB.
    pub rss_kb: u64,
    /// Peak resident set size (VmHWM), KiB.
    pub hwm_kb: u64,
    pub threads: u64,
    /// User plus system CPU time since the process started, seconds.
    pub cpu_s: f64,
}

/// Samples one process from `/proc/PID/status` and `/proc/PID/stat`,
/// opened once up front: a fleet can use up every file descriptor the
/// process may have, and sampling must still work then.
pub struct Sampler {
    status: std::fs::File,
    stat: std::fs::File,
}

impl Sampler {
    /// Opens the files of `pid` (`"self"` for this process).
    pub fn open(pid: &str) -> std::io::Result<Sampler> {
        Ok(Sampler {
            status: std::fs::File::open(format!("/proc/{pid}/status"))?,
            stat: std::fs::File::open(format!("/proc/{pid}/stat"))?,
        })
    }

    /// `None` once the process is gone.
    pub fn sample(&self) -> Option<ProcSample> {
        parse(
            &read_from_start(&self.status)?,
            &read_from_start(&self.stat)?,
        )
    }
}

/// procfs regenerates a file's content on a read from offset 0.
fn read_from_start(f: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

fn parse(status: &str, stat: &str) -> Option<ProcSample> {
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Fields after the command name (which may hold spaces) start after the
    // last ')': state is field 3, utime 14 and stime 15 (man 5 proc).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> f64 {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ProcSample {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        threads: field("Threads:"),
        cpu_s: (ticks(14) + ticks(15)) / hz,
    })
}

/// Busy CPU time of the whole machine, from `/proc/stat` (opened once, like
/// [`Sampler`]): on a shared machine, what other processes took during a run
/// is busy time minus the control plane's and the simulator's.
pub struct MachineCpu {
    stat: std::fs::File,
}

impl MachineCpu {
    pub fn open() -> std::io::Result<MachineCpu> {
        Ok(MachineCpu {
            stat: std::fs::File::open("/proc/stat")?,
        })
    }

    /// Seconds all CPUs together spent not idle since boot.
    pub fn busy_s(&self) -> Option<f64> {
        let text = read_from_start(&self.stat)?;
        // "cpu  user nice system idle iowait irq softirq steal ..." (man 5 proc)
        let ticks: Vec<f64> = text
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let total: f64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0.0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some((total - idle) / hz)
    }
}

/// Parses `127.0.0.2-127.0.0.31` (inclusive) or a single address.
pub fn parse_ip_range(s: &str) -> anyhow::Result<Vec<IpAddr>> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let parse = |x: &str| {
        x.trim()
            .parse::<Ipv4Addr>()
            .map_err(|e| anyhow::anyhow!("{x:?}: {e}"))
    };
    let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
    if b < a {
        anyhow::bail!("{s}: range ends before it starts");
    }
    if b - a >= 1 << 16 {
        anyhow::bail!("{s}: more than 65536 addresses");
    }
    Ok((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = parse_ip_range("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2], "127.0.0.4".parse::<IpAddr>().unwrap());
        assert_eq!(parse_ip_range("127.0.0.9").unwrap().len(), 1);
        assert!(parse_ip_range("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_ip_range("nope").is_err());
    }

    #[test]
    fn machine_cpu_moves_forward() {
        let m = MachineCpu::open().unwrap();
        let a = m.busy_s().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(m.busy_s().unwrap() >= a);
    }

    #[test]
    fn samples_itself_repeatedly() {
        let sampler = Sampler::open("self").unwrap();
        for _ in 0..3 {
            let s = sampler.sample().unwrap();
            assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb && s.threads >= 1);
        }
    }
}
