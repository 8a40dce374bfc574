//! The process's file-descriptor limit. Every connected proxy holds a socket,
//! so a control plane (and the fleet simulator) raises its soft limit to the
//! hard one at start instead of failing at the distribution's default 1,024.

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
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if want > lim_u64(lim.rlim_max) {
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(lim_u64(lim.rlim_max));
        let target = want.min(nr_open).max(lim_u64(lim.rlim_max));
        let raised = libc::rlimit {
            rlim_cur: target as libc::rlim_t,
            rlim_max: target as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct we pass; failure (no privilege)
        // leaves the limits as they were and we fall back below.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(FdLimit {
                soft: target,
                hard: target,
            });
        }
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FdLimit {
        soft: lim_u64(lim.rlim_cur),
        hard: lim_u64(lim.rlim_max),
    })
}

/// `rlim_t` is `u64` on Linux/x86_64 but not on every target.
#[allow(clippy::unnecessary_cast)]
fn lim_u64(v: libc::rlim_t) -> u64 {
    v as u64
}
