//! Driving the `sgrun` binary through its runc-compatible command line, as
//! containerd-shim-runc-v2 drives runc. Each verb is one short-lived child process; the shim
//! itself never forks a container (and never calls libcontainer): sgrun does, in its own
//! process, off the shim's tokio thread.
//!
//! Children are waited for through [`crate::reaper`], which owns every waitpid.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use tokio::io::AsyncReadExt;

use crate::error::{Result, ShimError};
use crate::reaper;

/// What one container's sgrun calls share: binary, state root, log file, default profile.
#[derive(Debug, Clone)]
pub struct Sgrun {
    pub binary: PathBuf,
    pub root: PathBuf,
    /// `--log` (JSON lines): where sgrun writes why a command failed.
    pub log: PathBuf,
    pub default_profile: Option<String>,
}

/// stdio for a command; `None` is /dev/null.
#[derive(Default)]
pub struct ChildIo {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

fn stdio(fd: Option<OwnedFd>) -> Stdio {
    fd.map(Stdio::from).unwrap_or_else(Stdio::null)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| ShimError::io("pipe", "creating a pipe", e.into()))
}

impl Sgrun {
    fn command<I, S>(&self, verb: &'static str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if let Some(p) = &self.default_profile {
            c.arg("--default-profile").arg(p);
        }
        c.arg(verb).args(args);
        c
    }

    /// Runs one verb. With `capture` (verbs that start no process) its stdout is returned and
    /// its stderr kept for the error; otherwise it gets `io`, which the container inherits. A
    /// non-zero status is an error that carries the last error sgrun logged (or its stderr).
    async fn run(
        &self,
        id: &str,
        verb: &'static str,
        mut cmd: Command,
        io: ChildIo,
        input: Option<&[u8]>,
        capture: bool,
    ) -> Result<Vec<u8>> {
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let stdin = match input {
            Some(data) => {
                // small documents (update's resources): they fit in the pipe buffer, so the
                // write cannot block before the child runs
                let (r, w) = pipe()?;
                let mut w = std::fs::File::from(w);
                w.write_all(data)
                    .map_err(|e| ShimError::io("pipe", "writing sgrun's stdin", e))?;
                Some(r)
            }
            None => io.stdin,
        };
        let (out_r, stdout) = if capture {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        } else {
            (None, io.stdout)
        };
        // never a pipe of ours as stderr of create/exec: the container inherits sgrun's stdio,
        // and a pipe it holds would never reach EOF while the container lives
        let (err_r, stderr) = if capture {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        } else {
            (None, io.stderr)
        };
        cmd.stdin(stdio(stdin))
            .stdout(stdio(stdout))
            .stderr(stdio(stderr));
        tracing::debug!(?cmd, "sgrun");
        let child = cmd
            .spawn()
            .map_err(|e| ShimError::io(&self.binary, "running sgrun", e))?;
        // registered before anything can await: the reaper keeps an early exit for us
        let status = reaper::wait(child.id() as i32);
        // the child's ends of the pipes live in `cmd`: close ours, or no read ever sees EOF
        drop(cmd);
        drop(child);

        let (out, err, code) = tokio::join!(read_all(out_r), read_all(err_r), status);
        let code = code.unwrap_or(-1);
        if code == 0 {
            return Ok(out);
        }
        let mut message = last_logged_error(&self.log, log_start).unwrap_or_default();
        if message.is_empty() {
            message = String::from_utf8_lossy(&err).trim().to_string();
        }
        if message.is_empty() {
            message = "no message".into();
        }
        Err(ShimError::Runtime {
            id: id.into(),
            verb,
            status: if code > 128 {
                format!("killed by signal {}", code - 128)
            } else {
                format!("exit status {code}")
            },
            message,
        })
    }

    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        io: ChildIo,
    ) -> Result<()> {
        let mut args: Vec<&OsStr> = vec![
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
        ];
        if let Some(s) = console_socket {
            args.extend(["--console-socket".as_ref(), s.as_os_str()]);
        }
        args.push(id.as_ref());
        let cmd = self.command("create", args);
        self.run(id, "create", cmd, io, None, false).await.map(drop)
    }

    pub async fn exec(
        &self,
        id: &str,
        process: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        io: ChildIo,
    ) -> Result<()> {
        let mut args: Vec<&OsStr> = vec![
            "--process".as_ref(),
            process.as_os_str(),
            "--detach".as_ref(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
        ];
        if let Some(s) = console_socket {
            args.extend(["--console-socket".as_ref(), s.as_os_str()]);
        }
        args.push(id.as_ref());
        let cmd = self.command("exec", args);
        self.run(id, "exec", cmd, io, None, false).await.map(drop)
    }

    async fn simple(&self, id: &str, verb: &'static str, args: &[&str]) -> Result<Vec<u8>> {
        let cmd = self.command(verb, args.iter().copied().chain([id]));
        self.run(id, verb, cmd, ChildIo::default(), None, true)
            .await
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        self.simple(id, "start", &[]).await.map(drop)
    }

    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let cmd = if all {
            self.command("kill", ["--all", id, &sig])
        } else {
            self.command("kill", [id, sig.as_str()])
        };
        self.run(id, "kill", cmd, ChildIo::default(), None, true)
            .await
            .map(drop)
    }

    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let args: &[&str] = if force { &["--force"] } else { &[] };
        self.simple(id, "delete", args).await.map(drop)
    }

    pub async fn pause(&self, id: &str) -> Result<()> {
        self.simple(id, "pause", &[]).await.map(drop)
    }

    pub async fn resume(&self, id: &str) -> Result<()> {
        self.simple(id, "resume", &[]).await.map(drop)
    }

    /// `update --resources -`: the LinuxResources JSON containerd sent, on stdin.
    pub async fn update(&self, id: &str, resources_json: &[u8]) -> Result<()> {
        let cmd = self.command("update", ["--resources", "-", id]);
        self.run(
            id,
            "update",
            cmd,
            ChildIo::default(),
            Some(resources_json),
            true,
        )
        .await
        .map(drop)
    }

    /// `events --stats`: one runc-format stats event.
    pub async fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let out = self.simple(id, "events", &["--stats"]).await?;
        serde_json::from_slice(&out).map_err(|e| ShimError::RuntimeOutput {
            id: id.into(),
            verb: "events --stats",
            reason: e.to_string(),
        })
    }

    /// `ps --format json`: the container's host pids.
    pub async fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let out = self.simple(id, "ps", &["--format", "json"]).await?;
        serde_json::from_slice(&out).map_err(|e| ShimError::RuntimeOutput {
            id: id.into(),
            verb: "ps --format json",
            reason: e.to_string(),
        })
    }
}

async fn read_all(fd: Option<OwnedFd>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(fd) = fd else { return out };
    match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(mut r) => {
            if let Err(e) = r.read_to_end(&mut out).await {
                tracing::warn!(error = %e, "reading sgrun's output");
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading sgrun's output"),
    }
    out
}

/// The message of the last `"level":"error"` line sgrun appended to its JSON log after
/// `from` (runc's format, which containerd's runc shim reads the same way).
pub fn last_logged_error(log: &Path, from: u64) -> Option<String> {
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    // a bounded tail: the log of a long-lived container grows
    let start = from.max(len.saturating_sub(64 * 1024));
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut text = String::new();
    f.take(64 * 1024).read_to_string(&mut text).ok()?;
    last_error_in(&text)
}

pub fn last_error_in(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("level")?.as_str()? == "error").then(|| v.get("msg")?.as_str().map(String::from))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_line_is_the_reason() {
        let log = concat!(
            "{\"level\":\"info\",\"msg\":\"starting\",\"time\":\"t\"}\n",
            "{\"level\":\"error\",\"msg\":\"first\",\"time\":\"t\"}\n",
            "not json\n",
            "{\"level\":\"error\",\"msg\":\"container x: no such bundle\",\"time\":\"t\"}\n",
            "{\"level\":\"debug\",\"msg\":\"done\",\"time\":\"t\"}\n",
        );
        assert_eq!(
            last_error_in(log).as_deref(),
            Some("container x: no such bundle")
        );
        assert_eq!(last_error_in("{\"level\":\"info\",\"msg\":\"x\"}"), None);
    }

    #[test]
    fn only_lines_after_the_offset_count() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.json");
        let old = "{\"level\":\"error\",\"msg\":\"old\"}\n";
        std::fs::write(&p, old).unwrap();
        assert_eq!(last_logged_error(&p, old.len() as u64), None);
        std::fs::write(
            &p,
            format!("{old}{{\"level\":\"error\",\"msg\":\"new\"}}\n"),
        )
        .unwrap();
        assert_eq!(
            last_logged_error(&p, old.len() as u64).as_deref(),
            Some("new")
        );
    }
}
