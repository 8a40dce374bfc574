//! The process's file-descriptor limit. Every connected proxy holds a socket,
//! so a control plane (and the fleet simulator) raises its soft limit to the
//! hard one at start instead of failing at the distribution's default 1,024.

use rlimit::Resource;

/// The file-descriptor limit after trying to raise it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FdLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises `RLIMIT_NOFILE`: the soft limit to the hard one, and when `want`
/// is beyond the hard limit and the process may (root or
/// `CAP_SYS_RESOURCE`), the hard limit too, up to the kernel's `nr_open`.
pub fn raise_fd_limit(want: u64) -> std::io::Result<FdLimit> {
    let (_, hard) = Resource::NOFILE.get()?;
    if want > hard {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(hard);
        let target = want.min(nr_open).max(hard);
        // Failure (no privilege) leaves the limits as they were, and we fall
        // back to the hard limit below.
        if Resource::NOFILE.set(target, target).is_ok() {
            return Ok(FdLimit {
                soft: target,
                hard: target,
            });
        }
    }
    Resource::NOFILE.set(hard, hard)?;
    Ok(FdLimit { soft: hard, hard })
}
