//! Site mode's restart policy: what the `io.sgrun.restart*` annotations ask for, the back-off
//! arithmetic, and the per-container state machine that decides when a restart may happen.
//! The asynchronous part (wait, `sgrun delete --force`, create, start) is in service.rs
//! (`restart_loop`); everything that decides is here, so it can be tested without processes.
//!
//! The rules, in the order they matter:
//! - restarts are enabled by a successful client Start, never by Create: an init that dies
//!   before the client started it is just stopped;
//! - a client Kill of the init (any signal), a Delete that goes ahead, or Shutdown disables
//!   them (and wakes a loop sleeping through its back-off, which then ends) until the next
//!   client Start;
//! - at most one restart loop per container; it commits to a restart only under the container
//!   lock, after checking it is still enabled: a Kill either comes before the commit (no
//!   restart) or after it (the Kill waits for the restart to finish, then signals the new
//!   init). See `Supervision::commit`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::{Result, ShimError};

pub const RESTART_ANNOTATION: &str = "io.sgrun.restart";
pub const BACKOFF_ANNOTATION: &str = "io.sgrun.restart-backoff-ms";

const POLICY_VALUES: &str = "allowed values are no, on-failure, always";
const BACKOFF_VALUES: &str = "allowed values are whole milliseconds from 10 to 60000";

pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(1000);
const MIN_BACKOFF_MS: u64 = 10;
const MAX_BACKOFF_MS: u64 = 60_000;
/// The back-off doubles up to this (see [`Policy::cap`]).
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A run at least this long resets the attempt counter: the site was healthy.
pub const RESET_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    No,
    /// exit status != 0, including 128+N for a signal
    OnFailure,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub when: When,
    /// The first delay; each consecutive restart doubles it, up to [`Policy::cap`].
    pub initial: Duration,
}

impl Policy {
    /// From a container's config.json annotations. Absent: no restarts (containerd mode never
    /// reads them). A bad value is an error naming the annotation and what it accepts.
    pub fn from_annotations(id: &str, ann: &HashMap<String, String>) -> Result<Policy> {
        let bad = |annotation, value: &str, allowed| ShimError::BadAnnotation {
            id: id.into(),
            annotation,
            value: value.into(),
            allowed,
        };
        let when = match ann.get(RESTART_ANNOTATION).map(String::as_str) {
            None | Some("no") => When::No,
            Some("on-failure") => When::OnFailure,
            Some("always") => When::Always,
            Some(v) => return Err(bad(RESTART_ANNOTATION, v, POLICY_VALUES)),
        };
        let initial = match ann.get(BACKOFF_ANNOTATION) {
            None => DEFAULT_BACKOFF,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if (MIN_BACKOFF_MS..=MAX_BACKOFF_MS).contains(&ms) => {
                    Duration::from_millis(ms)
                }
                _ => return Err(bad(BACKOFF_ANNOTATION, v, BACKOFF_VALUES)),
            },
        };
        Ok(Policy { when, initial })
    }

    /// Does an exit with this status call for a restart?
    pub fn wants(&self, exit_status: u32) -> bool {
        match self.when {
            When::No => false,
            When::OnFailure => exit_status != 0,
            When::Always => true,
        }
    }

    /// The longest delay: 30 s, or 32 × the initial delay when that is shorter (a 50 ms
    /// back-off tops out at 1.6 s, which keeps tests quick), and never below the initial delay.
    pub fn cap(&self) -> Duration {
        self.initial
            .max(MAX_DELAY.min(self.initial.saturating_mul(32)))
    }

    /// The delay before restart number `attempt` (1-based): initial × 2^(attempt-1), capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.cap())
    }
}

/// One restart loop's starting point, handed from the exit to the loop.
#[derive(Debug)]
pub struct Plan {
    pub exit_status: u32,
    pub previous_run: Duration,
    /// Becomes false when restarts are disabled: the loop's back-off wait ends at once.
    pub enabled: watch::Receiver<bool>,
}

/// A supervised container's restart state (site mode, a policy other than `no`).
#[derive(Debug)]
pub struct Supervision {
    pub policy: Policy,
    /// true from a client Start until a Kill, Delete or Shutdown
    enabled: watch::Sender<bool>,
    /// consecutive restarts (1 = the first restart after a healthy run)
    attempt: u32,
    /// when the current run started (client Start or restart)
    run_since: Option<Instant>,
    /// a restart loop exists (waiting out its back-off, or restarting)
    looping: bool,
    /// the loop is past its commit point: delete, create and start are running
    restarting: bool,
}

impl Supervision {
    pub fn new(policy: Policy) -> Self {
        Supervision {
            policy,
            enabled: watch::channel(false).0,
            attempt: 0,
            run_since: None,
            looping: false,
            restarting: false,
        }
    }

    pub fn enabled(&self) -> bool {
        *self.enabled.borrow()
    }

    pub fn restarting(&self) -> bool {
        self.restarting
    }

    /// The client started the container: restarts are on, counting afresh.
    pub fn started(&mut self, now: Instant) {
        self.enabled.send_replace(true);
        self.attempt = 0;
        self.run_since = Some(now);
    }

    /// A client Kill of the init, a Delete or Shutdown: no restart until the next client
    /// Start. A loop waiting out its back-off wakes up and ends; a loop past its commit
    /// point finishes its restart (the caller waits for it: see service.rs `settle_restart`).
    pub fn disable(&mut self) {
        self.enabled.send_replace(false);
    }

    /// The init exited: a plan if a restart loop must start now. Called once per exit, after
    /// TaskExit is published and the init is recorded as stopped.
    pub fn on_exit(&mut self, exit_status: u32, now: Instant) -> Option<Plan> {
        if !self.enabled() || self.looping || !self.policy.wants(exit_status) {
            return None;
        }
        let ran = self
            .run_since
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        if ran >= RESET_AFTER {
            self.attempt = 0;
        }
        self.looping = true;
        Some(Plan {
            exit_status,
            previous_run: ran,
            enabled: self.enabled.subscribe(),
        })
    }

    /// The next attempt's number and the delay to wait before it.
    pub fn next_attempt(&mut self) -> (u32, Duration) {
        self.attempt = self.attempt.saturating_add(1);
        (self.attempt, self.policy.delay(self.attempt))
    }

    /// At the end of the back-off, under the container lock: may the loop restart now? `free`
    /// says no Start is in flight and the init is stopped (the caller checks its records).
    /// Returning true marks the restart as running: from here a Kill or Delete waits for it
    /// instead of racing it. Returning false ends the loop.
    pub fn commit(&mut self, free: bool) -> bool {
        if !self.enabled() || !free {
            self.looping = false;
            return false;
        }
        self.restarting = true;
        true
    }

    /// The restart succeeded: the new run starts now and the loop ends.
    pub fn restarted(&mut self, now: Instant) {
        self.run_since = Some(now);
        self.restarting = false;
        self.looping = false;
    }

    /// The attempt failed: the loop goes on (true) unless restarts were disabled meanwhile.
    pub fn failed(&mut self) -> bool {
        self.restarting = false;
        if !self.enabled() {
            self.looping = false;
        }
        self.looping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn annotations_are_parsed() {
        let p = Policy::from_annotations("c", &ann(&[])).unwrap();
        assert_eq!(
            p,
            Policy {
                when: When::No,
                initial: DEFAULT_BACKOFF
            }
        );
        let p = Policy::from_annotations("c", &ann(&[(RESTART_ANNOTATION, "on-failure")])).unwrap();
        assert_eq!(p.when, When::OnFailure);
        let p = Policy::from_annotations(
            "c",
            &ann(&[(RESTART_ANNOTATION, "always"), (BACKOFF_ANNOTATION, "50")]),
        )
        .unwrap();
        assert_eq!(
            p,
            Policy {
                when: When::Always,
                initial: ms(50)
            }
        );
        for edge in ["10", "60000"] {
            assert!(Policy::from_annotations("c", &ann(&[(BACKOFF_ANNOTATION, edge)])).is_ok());
        }
    }

    #[test]
    fn bad_values_name_the_annotation_and_the_allowed_values() {
        for v in ["yes", "", "On-Failure", "unless-stopped"] {
            let e = Policy::from_annotations("blog", &ann(&[(RESTART_ANNOTATION, v)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains("blog") && e.contains(RESTART_ANNOTATION), "{e}");
            assert!(e.contains("no, on-failure, always"), "{e}");
        }
        for v in [
            "9",
            "60001",
            "-5",
            "1.5",
            "fast",
            "",
            "99999999999999999999999",
        ] {
            let e = Policy::from_annotations("blog", &ann(&[(BACKOFF_ANNOTATION, v)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(BACKOFF_ANNOTATION) && e.contains("10 to 60000"),
                "{v}: {e}"
            );
        }
    }

    #[test]
    fn on_failure_includes_signals() {
        let p = Policy {
            when: When::OnFailure,
            initial: DEFAULT_BACKOFF,
        };
        assert!(!p.wants(0));
        assert!(p.wants(3) && p.wants(137) && p.wants(143));
        let p = Policy {
            when: When::Always,
            ..p
        };
        assert!(p.wants(0));
        let p = Policy {
            when: When::No,
            ..p
        };
        assert!(!p.wants(1));
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let p = Policy {
            when: When::Always,
            initial: ms(1000),
        };
        let d: Vec<_> = (1..=7).map(|a| p.delay(a)).collect();
        assert_eq!(
            d,
            [
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16000),
                ms(30000),
                ms(30000)
            ]
        );
        assert_eq!(p.delay(u32::MAX), ms(30000));
        // a short initial delay tops out at 32x, so tests see the cap quickly
        let p = Policy {
            initial: ms(50),
            ..p
        };
        assert_eq!(p.cap(), ms(1600));
        let d: Vec<_> = (1..=7).map(|a| p.delay(a)).collect();
        assert_eq!(
            d,
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(1600)
            ]
        );
        // a long initial delay is never shortened by the cap
        let p = Policy {
            initial: ms(60000),
            ..p
        };
        assert_eq!(p.cap(), ms(60000));
        assert_eq!(p.delay(1), ms(60000));
        assert_eq!(p.delay(5), ms(60000));
        let p = Policy {
            initial: ms(10),
            ..p
        };
        assert_eq!(p.cap(), ms(320));
    }

    fn supervised() -> Supervision {
        Supervision::new(Policy {
            when: When::OnFailure,
            initial: ms(50),
        })
    }

    #[test]
    fn nothing_restarts_before_a_client_start() {
        let mut s = supervised();
        assert!(s.on_exit(1, Instant::now()).is_none());
    }

    #[test]
    fn consecutive_restarts_count_up_and_a_long_run_resets() {
        let t0 = Instant::now();
        let mut s = supervised();
        s.started(t0);
        let plan = s.on_exit(3, t0 + ms(100)).unwrap();
        assert_eq!(plan.previous_run, ms(100));
        assert!(*plan.enabled.borrow());
        assert_eq!(s.next_attempt(), (1, ms(50)));
        assert!(s.commit(true));
        assert!(s.restarting());
        s.restarted(t0 + ms(200));
        assert!(s.on_exit(3, t0 + ms(300)).is_some());
        assert_eq!(s.next_attempt(), (2, ms(100)));
        assert!(s.commit(true));
        s.restarted(t0 + ms(400));
        // ran 60 s: healthy, counting starts again
        let plan = s.on_exit(3, t0 + ms(400) + RESET_AFTER).unwrap();
        assert_eq!(plan.previous_run, RESET_AFTER);
        assert_eq!(s.next_attempt(), (1, ms(50)));
        // a failed attempt keeps counting within the same loop
        assert!(s.commit(true));
        assert!(s.failed());
        assert_eq!(s.next_attempt(), (2, ms(100)));
    }

    #[test]
    fn one_loop_at_a_time_and_a_clean_exit_is_left_alone() {
        let t0 = Instant::now();
        let mut s = supervised();
        s.started(t0);
        assert!(s.on_exit(0, t0).is_none(), "on-failure ignores status 0");
        assert!(s.on_exit(1, t0).is_some());
        assert!(s.on_exit(1, t0).is_none(), "a loop is already running");
    }

    #[test]
    fn disabling_ends_a_waiting_loop_and_lets_a_running_one_finish() {
        let t0 = Instant::now();
        let mut s = supervised();
        s.started(t0);
        let plan = s.on_exit(1, t0).unwrap();
        s.disable();
        assert!(!*plan.enabled.borrow(), "the loop's back-off wait is woken");
        assert!(!s.commit(true), "no restart after a Kill");
        // the loop ended: nothing restarts until the client starts it again
        assert!(s.on_exit(1, t0).is_none());
        s.started(t0);
        let _plan = s.on_exit(1, t0).unwrap();
        assert!(s.commit(true));
        s.disable();
        assert!(
            s.restarting(),
            "a committed restart finishes; Kill waits for it"
        );
        assert!(!s.failed(), "and a failed one is not retried");
        assert!(s.on_exit(1, t0).is_none());
    }

    #[test]
    fn a_busy_container_ends_the_loop() {
        let t0 = Instant::now();
        let mut s = supervised();
        s.started(t0);
        s.on_exit(1, t0).unwrap();
        assert!(!s.commit(false));
        assert!(!s.restarting());
        // no loop left: the next exit may plan again
        assert!(s.on_exit(1, t0).is_some());
    }
}
