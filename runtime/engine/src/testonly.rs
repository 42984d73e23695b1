//! Test-only knobs that weaken `exec` or widen its setup window, so that the security tests
//! can prove they catch the holes they guard against (DESIGN.md: every security test has a
//! weakened twin).
//!
//! THESE KNOBS EXIST ONLY IN DEBUG BUILDS (`cargo build`, what the integration tests run).
//! In a release build (`make build`, `make install`) the functions below are constants and
//! the environment variables are never read. When a knob is active, sgrun says so on stderr
//! on every call, so nobody can run a weakened sgrun by accident without noticing.
//!
//! - `SGRUN_TEST_ONLY_WEAKEN=dumpable,keep-fds,writable-exe` (comma-separated):
//!   `dumpable` skips PR_SET_DUMPABLE 0 in the exec'd child and sets it dumpable again at its
//!   last privileged point (the kernel clears the flag on a uid change, e.g. into a user
//!   namespace): the CVE-2016-9962 hole;
//!   `keep-fds` skips marking inherited fds close-on-exec (host fd leak);
//!   `writable-exe` skips the read-only re-exec of the runtime binary (CVE-2019-5736 hole).
//! - `SGRUN_TEST_ONLY_EXEC_PAUSE_MS=N`: the exec'd child sleeps N ms at its last privileged
//!   point (capabilities and uid set, fds marked, seccomp not yet installed), which turns a
//!   microseconds-wide race into one a test can win every time. It weakens nothing by itself.

/// One of the holes a test may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    Dumpable,
    KeepFds,
    WritableExe,
}

impl Weakness {
    #[cfg(debug_assertions)]
    fn name(self) -> &'static str {
        match self {
            Weakness::Dumpable => "dumpable",
            Weakness::KeepFds => "keep-fds",
            Weakness::WritableExe => "writable-exe",
        }
    }
}

/// True when a debug build was asked to open `w`; always false in release builds.
#[cfg(debug_assertions)]
pub fn weakened(w: Weakness) -> bool {
    let on = std::env::var("SGRUN_TEST_ONLY_WEAKEN")
        .map(|v| v.split(',').any(|x| x.trim() == w.name()))
        .unwrap_or(false);
    if on {
        eprintln!(
            "sgrun: WARNING: TEST-ONLY WEAKENING ACTIVE (SGRUN_TEST_ONLY_WEAKEN={}): this debug build is deliberately insecure",
            w.name()
        );
    }
    on
}

#[cfg(not(debug_assertions))]
pub fn weakened(_w: Weakness) -> bool {
    false
}

/// How long the exec'd child pauses at its last privileged point; zero in release builds.
#[cfg(debug_assertions)]
pub fn exec_pause() -> std::time::Duration {
    let ms = std::env::var("SGRUN_TEST_ONLY_EXEC_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if ms > 0 {
        eprintln!("sgrun: WARNING: TEST-ONLY KNOB ACTIVE (SGRUN_TEST_ONLY_EXEC_PAUSE_MS={ms})");
    }
    std::time::Duration::from_millis(ms)
}

#[cfg(not(debug_assertions))]
pub fn exec_pause() -> std::time::Duration {
    std::time::Duration::ZERO
}
