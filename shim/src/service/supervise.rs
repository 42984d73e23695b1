//! Site mode's restarts of a container's init: the asynchronous half of restart.rs (which
//! holds the policy and decides). A restart is the client's Create and Start replayed: `sgrun
//! delete --force`, `sgrun create` from the same request (bundle, stdio, options), `sgrun
//! start`; the init record gets the new pid, TaskCreate and TaskStart are published as for a
//! first start, and the exit and OOM watches begin again.
//!
//! Ordering, and why:
//! 1. The loop starts from `exited`, after TaskExit is published, the init is recorded as
//!    stopped and Wait callers have their status: a restart is a new run, never a rewrite of
//!    the old one.
//! 2. It waits out the back-off, woken early when restarts are disabled (Kill, Delete,
//!    Shutdown), and then commits under the container lock (`Supervision::commit`): only if
//!    still enabled, no Start is in flight and the init is stopped. Committing raises the
//!    `starting` gate, which a client Start also checks, so the two never overlap.
//! 3. Past the commit, nothing aborts it: a Kill or Delete that arrives meanwhile waits in
//!    `settle_restart` and then acts on the outcome (signals the new init / is refused because
//!    it runs). Aborting halfway could leave a container sgrun created but the shim forgot.
//! 4. The record switches to the new run only once `sgrun start` succeeded; the new exit
//!    watch is registered after that (the reaper keeps an early status), and the gate opens
//!    only after TaskStart, so a new init that dies at once still reports TaskExit after it.

use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::Instrument;

use super::*;
use crate::restart::Plan;

/// How long a failed restart waits for the init it created to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

impl Service {
    /// After an exit of the init: starts the restart loop if the policy asks for it.
    pub(super) fn supervise_exit(&self, id: &str, exit_status: u32) {
        let Ok(Some((plan, span))) = self.with(id, |c| {
            let span = c.span.clone();
            Ok(c.sup
                .as_mut()
                .and_then(|s| s.state.on_exit(exit_status, Instant::now()))
                .map(|p| (p, span)))
        }) else {
            return;
        };
        let svc = self.clone();
        let id = id.to_string();
        tokio::spawn(async move { svc.restart_loop(id, plan).await }.instrument(span));
    }

    /// Waits until no restart of `id` is past its commit point.
    pub(super) async fn settle_restart(&self, id: &str) -> Result<()> {
        loop {
            let gate = self.with(id, |c| {
                let busy = c.sup.as_ref().is_some_and(|s| s.state.restarting());
                Ok(busy.then(|| c.starting.subscribe()))
            })?;
            let Some(mut gate) = gate else {
                return Ok(());
            };
            // the restart clears `restarting` before it opens the gate: after the gate the
            // check above finds it done
            let _ = gate.wait_for(|starting| !*starting).await;
        }
    }

    async fn restart_loop(self, id: String, plan: Plan) {
        let Plan {
            exit_status,
            previous_run,
            mut enabled,
        } = plan;
        let previous_run_ms = previous_run.as_millis() as u64;
        loop {
            let Ok(Some((attempt, delay))) =
                self.with(&id, |c| Ok(c.sup.as_mut().map(|s| s.state.next_attempt())))
            else {
                return;
            };
            tracing::info!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                exit_status,
                "restart scheduled"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // disabled meanwhile: the commit below sees it and ends the loop
                _ = enabled.wait_for(|on| !*on) => {}
            }
            // the commit point (module comment, 2.)
            let committed = self.with(&id, |c| {
                let free = !*c.starting.borrow() && c.init.state == State::Stopped;
                let Some(s) = c.sup.as_mut() else {
                    return Ok(None);
                };
                if !s.state.commit(free) {
                    return Ok(None);
                }
                c.starting.send_replace(true);
                let req = s.request.clone();
                // the old run's OOM watch ends before its cgroup is removed and made again
                if let Some(h) = c.oom.take() {
                    h.abort();
                }
                Ok(Some((
                    req,
                    c.rt.clone(),
                    c.bundle.clone(),
                    c.starting.clone(),
                    c.span.clone(),
                )))
            });
            let Ok(Some((req, rt, bundle, gate, span))) = committed else {
                tracing::info!("restart cancelled");
                return;
            };
            // opens the gate however this ends, after the record and TaskStart (4.)
            let _open = GateOpener(gate);
            match self.restart_once(&req, &rt, &bundle).await {
                Ok(started) => {
                    self.restarted(
                        &id,
                        started,
                        span,
                        attempt,
                        delay,
                        exit_status,
                        previous_run_ms,
                    )
                    .await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "restart failed");
                    if let Some(log) = &self.0.events {
                        log.record(
                            events_sink::TOPIC_RESTART_FAILED,
                            &id,
                            &[
                                ("attempt", Value::from(attempt)),
                                ("error", Value::from(events_sink::short(&e.to_string()))),
                            ],
                        );
                    }
                    let again = self
                        .with(&id, |c| {
                            Ok(c.sup.as_mut().is_some_and(|s| s.state.failed()))
                        })
                        .unwrap_or(false);
                    if !again {
                        return;
                    }
                }
            }
        }
    }

    /// delete, create, start. On error nothing of the new run is left: a created init is
    /// removed and reaped here, never reported (the record still describes the old run).
    async fn restart_once(
        &self,
        req: &CreateTaskRequest,
        rt: &Sgrun,
        bundle: &Path,
    ) -> Result<Started> {
        let id = &req.id;
        // the old run's state (its init is gone). An error is not fatal: if the container
        // was removed behind the shim's back, create works anyway; if not, create says why.
        if let Err(e) = rt.delete(id, true).await {
            tracing::warn!(error = %e, "sgrun delete --force before the restart");
        }
        let started = match self.run_create(req, rt, bundle).await {
            Ok(s) => s,
            Err(e) => {
                // sgrun removes a half-made container itself; make sure of it (as Create does)
                let _ = rt.delete(id, true).await;
                return Err(e);
            }
        };
        if let Err(e) = rt.start(id).await {
            let pid = started.pid;
            if let Some(h) = &started.output {
                h.abort();
            }
            if let Some(h) = &started.stdin_pump {
                h.abort();
            }
            let _ = rt.delete(id, true).await;
            // claim its status, so the reaper does not keep it
            let _ = tokio::time::timeout(REAP_TIMEOUT, reaper::wait(pid)).await;
            return Err(e);
        }
        Ok(started)
    }

    /// The new run is up: record it, watch it, tell.
    #[allow(clippy::too_many_arguments)]
    async fn restarted(
        &self,
        id: &str,
        started: Started,
        span: tracing::Span,
        attempt: u32,
        delay: Duration,
        exit_status: u32,
        previous_run_ms: u64,
    ) {
        let pid = started.pid;
        let recorded = self.with(id, |c| {
            c.init.pid = pid;
            c.init.state = State::Running;
            c.init.exit.send_replace(None);
            c.init.console = started.console;
            c.init.stdin_pump = started.stdin_pump;
            if let Some(s) = c.sup.as_mut() {
                s.state.restarted(Instant::now());
            }
            Ok(c.sup.as_ref().map(|s| s.request.clone()))
        });
        let Ok(Some(req)) = recorded else {
            return;
        };
        self.watch_exit(id, "", pid, started.output, span.clone());
        let oom = self.watch_oom(id, pid, span.clone());
        let _ = self.with(id, |c| {
            c.oom = oom;
            Ok(())
        });
        tracing::info!(attempt, pid, "restarted");
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, task_create(&req, pid))
            .await;
        self.publish_start(id, pid).await;
        if let Some(log) = &self.0.events {
            log.record(
                events_sink::TOPIC_RESTART,
                id,
                &[
                    ("attempt", Value::from(attempt)),
                    ("delay_ms", Value::from(delay.as_millis() as u64)),
                    ("exit_status", Value::from(exit_status)),
                    ("previous_run_ms", Value::from(previous_run_ms)),
                    ("pid", Value::from(pid)),
                ],
            );
        }
    }
}
