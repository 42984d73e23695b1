//! Running nginx: `nginx -t`, launching the master, and telling our master from any other
//! process through /proc (the pid in a pid file may since belong to something else).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{ProxyError, Result};

/// What `nginx -t` said about one configuration file.
pub(crate) struct TestOutcome {
    pub ok: bool,
    /// nginx's messages without its "nginx: " prefix and the closing "test failed" line.
    pub message: String,
    /// The line of the first error in the tested file, from "... in FILE:LINE".
    pub line: Option<usize>,
}

/// The arguments every nginx invocation of ours gets. `-e stderr`: messages from before the
/// configuration's own error_log is open go to our pipe, never to a default log path of the
/// distribution's build. `-p`: relative paths (there are none) would resolve in state_dir.
fn base_args(cmd: &mut Command, conf: &Path, prefix: &Path) {
    let mut prefix = prefix.as_os_str().to_os_string();
    prefix.push("/");
    cmd.arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(prefix)
        .arg("-e")
        .arg("stderr");
}

fn spawn_error(nginx: &Path) -> impl FnOnce(std::io::Error) -> ProxyError + '_ {
    move |source| ProxyError::NginxMissing {
        path: nginx.to_path_buf(),
        source,
    }
}

/// nginx's stderr made readable for an error message: with `-e stderr` each line is a log
/// line ("2026/12/04 14:39:06 [emerg] 22567#22567: unknown directive ..."); keep the level and
/// the message, drop the time, the pid and the "test failed" summary.
pub(crate) fn clean_stderr(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .lines()
        .map(|l| l.strip_prefix("nginx: ").unwrap_or(l))
        .map(strip_log_prefix)
        .filter(|l| !l.is_empty() && !l.starts_with("configuration file "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// "DATE TIME [level] PID#TID: message" -> "[level] message"; other lines unchanged.
fn strip_log_prefix(line: &str) -> String {
    let parsed = (|| {
        let (stamp, rest) = line.split_at_checked(19)?;
        let stamp_ok = stamp
            .bytes()
            .all(|b| b.is_ascii_digit() || b"/: ".contains(&b));
        let rest = rest.strip_prefix(" [")?;
        let (level, rest) = rest.split_once("] ")?;
        let (ids, message) = rest.split_once(": ")?;
        let ids_ok = ids
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'#' || b == b'*');
        (stamp_ok && ids_ok).then(|| format!("[{level}] {message}"))
    })();
    parsed.unwrap_or_else(|| line.to_string())
}

/// `nginx -t -q`: parse and check the file as the master would, open its logs and create its
/// temp directories, but bind nothing (so it works while the live proxy holds the ports).
pub(crate) fn test_config(nginx: &Path, conf: &Path, prefix: &Path) -> Result<TestOutcome> {
    let mut cmd = Command::new(nginx);
    cmd.arg("-t").arg("-q");
    base_args(&mut cmd, conf, prefix);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_error(nginx))?;
    let message = clean_stderr(&out.stderr);
    let needle = format!(" in {}:", conf.display());
    let line = message.lines().find_map(|l| {
        let at = l.find(&needle)? + needle.len();
        let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    Ok(TestOutcome {
        ok: out.status.success(),
        message,
        line,
    })
}

/// Start the master. With `daemon on` the command returns once the sockets are bound and the
/// master has forked away (exit 0), or with nginx's error (exit 1) before any process is left.
/// Its stderr goes to a file, not a pipe: the daemon keeps the inherited descriptor open for a
/// while, and reading a pipe to its end would wait for it.
pub(crate) fn launch(
    nginx: &Path,
    conf: &Path,
    prefix: &Path,
    err_file: &Path,
    socket_root: Option<&Path>,
) -> Result<(bool, String)> {
    let errf = fs::File::create(err_file).map_err(ProxyError::io("create", err_file))?;
    let mut cmd = Command::new(nginx);
    base_args(&mut cmd, conf, prefix);
    if let Some(root) = socket_root {
        // 0711 like sgrun's run directories: traversable, not listable (only new ones get it)
        std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o711)
            .create(root)
            .map_err(ProxyError::io("create", root))?;
        let root = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
            .map_err(|_| ProxyError::io("use", root)(std::io::ErrorKind::InvalidInput.into()))?;
        // SAFETY: the closure runs between fork and exec and only makes system calls on
        // memory prepared before the fork (no allocation, no lock).
        unsafe {
            cmd.pre_exec(move || nosymfollow_view(&root));
        }
    }
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errf)
        .status()
        .map_err(spawn_error(nginx))?;
    let raw = fs::read(err_file).unwrap_or_default();
    let _ = fs::remove_file(err_file);
    Ok((status.success(), clean_stderr(&raw)))
}

/// In the child, before nginx runs: a mount namespace of its own (the master and its workers
/// keep it; the host's is untouched), where `root` is a bind of itself with
/// MOUNT_ATTR_NOSYMFOLLOW, recursively. Path lookups that meet a symlink on that mount fail
/// with ELOOP, so a worker's connect(2) reaches a socket only by its real path. Private
/// first, so that the bind does not propagate to the host. Between fork and exec: system
/// calls only.
fn nosymfollow_view(root: &std::ffi::CStr) -> std::io::Result<()> {
    let check = |rc: libc::c_long| {
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: plain system calls with valid NUL-terminated paths (or NULL where the kernel
    // ignores them) and a valid mount_attr.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS).into())?;
        let none = std::ptr::null();
        check(
            libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
            .into(),
        )?;
        check(
            libc::mount(
                root.as_ptr(),
                root.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
            .into(),
        )?;
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_NOSYMFOLLOW,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        check(libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            root.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        ))?;
    }
    Ok(())
}

/// A process's state letter and parent from /proc/PID/stat (the name field may hold spaces and
/// parentheses, so fields are counted after the last ')').
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Alive and not a zombie: an nginx master is not our child (it daemonised), so its exit is
/// reaped by init, and until then kill(pid, 0) would still succeed.
pub(crate) fn is_alive(pid: i32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The live children of `pid` (nginx's workers).
pub(crate) fn children(pid: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|p| matches!(stat(*p), Some((s, ppid)) if ppid == pid && s != 'Z' && s != 'X'))
        .collect()
}

/// A process's title: nginx rewrites its argv, e.g. "nginx: worker process is shutting down".
pub(crate) fn title(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .replace('\0', " ")
        .trim_end()
        .to_string()
}

/// The binary a process runs; " (deleted)" is what the kernel appends after a package upgrade
/// replaced the file, and the master keeps running the old one.
fn exe_of(pid: i32) -> Option<PathBuf> {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let s = exe.to_string_lossy();
    Some(PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s)))
}

/// Whether `pid` is the nginx master of this proxy: its binary is `nginx` and its title (nginx
/// rewrites argv to "nginx: master process <original command line>") names our config file.
/// Another nginx on the host (the system's, another state directory's) never matches.
pub(crate) fn is_our_master(pid: i32, nginx: &Path, conf: &Path) -> bool {
    if pid <= 1 || !is_alive(pid) || exe_of(pid).as_deref() != Some(nginx) {
        return false;
    }
    let title = title(pid);
    let conf_arg = format!(" -c {} ", conf.display());
    title.starts_with("nginx: master process ") && format!("{title} ").contains(&conf_arg)
}

/// Our master, found by its title when the pid file is gone or stale (deleted by hand, or a
/// crash of sgrun between launch and the pid file check).
pub(crate) fn find_our_master(nginx: &Path, conf: &Path) -> Option<i32> {
    pids().into_iter().find(|p| is_our_master(*p, nginx, conf))
}

/// Read a pid file: `None` if missing, empty (nginx -t truncates the pid file it is given) or
/// not a number.
pub(crate) fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub(crate) fn signal(pid: i32, sig: Signal) -> Result<()> {
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(source) => Err(ProxyError::Signal {
            pid,
            signal: sig.as_str(),
            source,
        }),
    }
}

/// Poll until `done` holds or `limit` passes; true if it held.
pub(crate) fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_cleaned() {
        let raw = b"nginx: [emerg] unknown directive \"x\" in /s/nginx.conf.new:42\nnginx: configuration file /s/nginx.conf.new test failed\n";
        assert_eq!(
            clean_stderr(raw),
            "[emerg] unknown directive \"x\" in /s/nginx.conf.new:42"
        );
        let raw = b"2026/12/04 14:39:06 [emerg] 22567#22567: open() \"/s/logs/error.log\" failed (21: Is a directory)\n";
        assert_eq!(
            clean_stderr(raw),
            "[emerg] open() \"/s/logs/error.log\" failed (21: Is a directory)"
        );
    }

    #[test]
    fn our_own_process_is_not_a_master() {
        let me = std::process::id() as i32;
        assert!(is_alive(me));
        assert!(!is_our_master(
            me,
            Path::new("/usr/sbin/nginx"),
            Path::new("/x/nginx.conf")
        ));
        assert!(!is_alive(i32::MAX));
    }
}
