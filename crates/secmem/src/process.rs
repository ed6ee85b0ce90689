//! [`forbid_core_dumps`]: the first thing `main` does in a program that reads secrets.

use crate::SecmemError;

/// Makes this process non-dumpable (`PR_SET_DUMPABLE` 0: no core file on a crash, and no
/// ptrace or `/proc/PID/mem` by users other than root) and sets its core size limit to zero
/// (soft and hard, so nothing it starts can raise it either).
///
/// Call it before any secret is read. The daemon's unit also sets `LimitCORE=0`; this covers
/// a daemon started by hand and the programs no unit starts (the CLI, the desktop program).
pub fn forbid_core_dumps() -> Result<(), SecmemError> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(SecmemError::System {
            call: "prctl(PR_SET_DUMPABLE, 0), to keep passcodes out of core dumps",
            source: std::io::Error::last_os_error(),
        });
    }
    let mut current = libc::rlimit {
        rlim_cur: 1,
        rlim_max: 1,
    };
    // SAFETY: `current` is a valid out-pointer for the duration of the call.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut current) } == 0;
    if read && current.rlim_cur == 0 && current.rlim_max == 0 {
        // Already so (the unit's LimitCORE=0).
        return Ok(());
    }
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `none` is a valid rlimit for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
        return Err(SecmemError::System {
            call: "setrlimit(RLIMIT_CORE, 0), to keep passcodes out of core dumps",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Whether this process may be dumped (for `cardgate doctor` and the tests).
pub fn is_dumpable() -> bool {
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointers.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a child process: the test runner must stay dumpable.
    #[test]
    fn a_hardened_process_is_not_dumpable_and_has_no_core_limit() {
        if std::env::var_os("SECMEM_CHILD").is_some() {
            assert!(is_dumpable());
            forbid_core_dumps().expect("hardening");
            assert!(!is_dumpable());
            let mut limit = libc::rlimit {
                rlim_cur: 1,
                rlim_max: 1,
            };
            // SAFETY: `limit` is a valid out-pointer.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut limit) }, 0);
            assert_eq!((limit.rlim_cur, limit.rlim_max), (0, 0));
            return;
        }
        let exe = std::env::current_exe().expect("exe");
        let run = std::process::Command::new(exe)
            .args([
                "--exact",
                "process::tests::a_hardened_process_is_not_dumpable_and_has_no_core_limit",
            ])
            .env("SECMEM_CHILD", "1")
            .output()
            .expect("child");
        let out = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success() && out.contains("1 passed"), "{out}");
    }
}
