//! Signal names and numbers as runc accepts them: `KILL`, `SIGKILL`, `kill`, `9`.

use nix::sys::signal::Signal;

use crate::error::{EngineError, Result};

pub fn parse_signal(s: &str) -> Result<Signal> {
    let unknown = || EngineError::UnknownSignal {
        signal: s.to_string(),
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| unknown());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| unknown())
}

/// Exit status of a process as a shell reports it: the code, or 128+N for a signal N.
pub fn exit_code(status: nix::sys::wait::WaitStatus) -> Option<i32> {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
    }

    #[test]
    fn unknown_signals_are_refused() {
        for s in ["", "FOO", "0", "65", "-1", "SIG"] {
            assert!(parse_signal(s).is_err(), "{s}");
        }
    }

    #[test]
    fn signal_exit_is_128_plus_n() {
        use nix::sys::wait::WaitStatus;
        use nix::unistd::Pid;
        assert_eq!(
            exit_code(WaitStatus::Signaled(
                Pid::from_raw(1),
                Signal::SIGKILL,
                false
            )),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::Exited(Pid::from_raw(1), 3)), Some(3));
    }
}
