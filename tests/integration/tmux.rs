//! `sgrun exec -t` driven in tmux as a person would drive it (send-keys, capture-pane): the
//! prompt, a command, the caller's window size and a resize, Ctrl-C, exit codes, raw mode
//! restored, and a terminal that goes away mid-session. Needs tmux (scripts/install-deps.sh
//! installs it with the test packages); without it the tests fail and say so.
//!
//! Also the messages of exec's bad input: an unknown user, group, command or container.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sgrun_tests::{alive, Container, TestEnv};

/// A private tmux server (its own socket and config), killed on drop.
struct Tmux {
    sock: PathBuf,
}

const PROMPT: &str = "[sgrun-test]# ";
/// The prompt as capture-pane shows it (trailing blanks trimmed).
const PROMPT_SEEN: &str = "[sgrun-test]#";

impl Tmux {
    fn new(env: &TestEnv) -> Self {
        let conf = env.path().join("tmux.conf");
        // The pane is exactly the window (no status line), and a dead pane stays so that its
        // exit status can be read.
        fs::write(&conf, "set -g status off\nset -g remain-on-exit on\n").unwrap();
        // The config sits beside the socket; the server reads it when the first session starts.
        Tmux {
            sock: env.path().join("tmux.sock"),
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let conf = self.sock.with_file_name("tmux.conf");
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .arg("-f")
            .arg(&conf)
            .args(args)
            .env_remove("TMUX")
            .env("TERM", "xterm")
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux (scripts/install-deps.sh --for test installs it): {e}")
            });
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A detached session of 80x24 running `cmd` under sh.
    fn session(&self, name: &str, cmd: &str) {
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "80",
            "-y",
            "24",
            "sh",
            "-c",
            cmd,
        ]);
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", name];
        a.extend_from_slice(keys);
        self.tmux(&a);
    }

    /// Type a line and press Enter.
    fn line(&self, name: &str, text: &str) {
        self.keys(name, &["-l", text]);
        self.keys(name, &["Enter"]);
    }

    fn screen(&self, name: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", name])
    }

    fn display(&self, name: &str, format: &str) -> String {
        self.tmux(&["display-message", "-p", "-t", name, format])
            .trim()
            .to_string()
    }

    /// Wait until the screen holds `needle` `times` times.
    #[track_caller]
    fn wait_for(&self, name: &str, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen(name);
            if s.matches(needle).count() >= times {
                return s;
            }
            if Instant::now() > deadline {
                panic!("{needle:?} x{times} did not appear in tmux session {name}:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the pane's process to end; its exit status.
    #[track_caller]
    fn wait_dead(&self, name: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // tmux may mark the pane dead (its pty closed) a moment before it has reaped the
            // process and knows the status: wait for both.
            if self.display(name, "#{pane_dead}") == "1" {
                if let Ok(status) = self.display(name, "#{pane_dead_status}").parse() {
                    return status;
                }
            }
            if Instant::now() > deadline {
                let info = self.display(
                    name,
                    "dead=#{pane_dead} status=#{pane_dead_status} signal=#{pane_dead_signal} pid=#{pane_pid}",
                );
                let pid = info.rsplit("pid=").next().unwrap_or_default().to_string();
                let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                panic!(
                    "pane {name} did not exit ({info}; wchan {wchan:?}; stat {stat:?}):\n{}",
                    self.screen(name)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.sock)
            .arg("kill-server")
            .output();
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell command that runs `sgrun exec -t ...` in a pane, as `exec` so that the pane's
/// process is sgrun itself.
fn exec_cmd(c: &Container, extra: &str) -> String {
    format!(
        "exec {} --root {} exec -t -e {} {} {}",
        sh_quote(sgrun_tests::sgrun_bin().to_str().unwrap()),
        sh_quote(c.env.sg.root.to_str().unwrap()),
        sh_quote(&format!("PS1={PROMPT}")),
        c.id,
        extra
    )
}

fn procs(c: &Container) -> Vec<i32> {
    c.read_cgroup("pids", "cgroup.procs")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[track_caller]
fn wait_procs(c: &Container, n: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = procs(c);
        if p.len() == n {
            return p;
        }
        if Instant::now() > deadline {
            let cmds: Vec<String> = p
                .iter()
                .map(|pid| {
                    let c = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    format!("{pid}: {}", String::from_utf8_lossy(&c).replace('\0', " "))
                })
                .collect();
            panic!("expected {n} processes in the container, found {cmds:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exec_tty_in_tmux_prompt_resize_ctrl_c_exit() {
    let env = TestEnv::new("tmux");
    let c = env.container("t", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let t = Tmux::new(&env);
    let s = "main";
    t.session(s, &exec_cmd(&c, "sh"));
    t.wait_for(s, PROMPT_SEEN, 1);

    // A command, and the caller's initial size (80x24), seen by the shell from its start.
    t.line(s, "echo hello-$((6*7)); stty size");
    t.wait_for(s, "hello-42", 1);
    t.wait_for(s, "24 80", 1);

    // A resize of the caller's terminal reaches the pty.
    t.tmux(&["resize-window", "-t", s, "-x", "100", "-y", "30"]);
    assert_eq!(t.display(s, "#{pane_height} #{pane_width}"), "30 100");
    std::thread::sleep(Duration::from_millis(200));
    t.line(s, "stty size");
    t.wait_for(s, "30 100", 1);

    // Ctrl-C ends the foreground command, not the shell.
    t.line(s, "sleep 1000");
    wait_procs(&c, 3);
    t.keys(s, &["C-c"]);
    wait_procs(&c, 2);
    t.line(s, "echo after-ctrl-c-$?");
    t.wait_for(s, "after-ctrl-c-130", 1);

    // exit 3 gives 3, and the shell is gone from the container.
    t.line(s, "exit 3");
    assert_eq!(t.wait_dead(s), 3, "{}", t.screen(s));
    wait_procs(&c, 1);

    // A command killed by a signal gives 128+N; the caller's terminal is back in cooked mode
    // afterwards (raw mode restored).
    let s2 = "signal";
    t.session(
        s2,
        &format!(
            "{} sh -c 'kill -KILL $$'; echo status=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '; echo; sleep 1000",
            exec_cmd(&c, "").trim_start_matches("exec ")
        ),
    );
    let screen = t.wait_for(s2, "status=", 1);
    let screen = if screen.contains("icanon") {
        screen
    } else {
        t.wait_for(s2, "icanon", 1)
    };
    assert!(screen.contains("status=137"), "{screen}");
    assert!(
        screen.contains("icanon echo") && !screen.contains("-icanon"),
        "raw mode must be restored: {screen}"
    );
    wait_procs(&c, 1);
}

#[test]
fn exec_tty_terminal_gone_leaves_nothing() {
    let env = TestEnv::new("tmuxgone");
    let c = env.container("g", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    let t = Tmux::new(&env);
    let s = "gone";
    t.session(s, &exec_cmd(&c, "sh"));
    t.wait_for(s, PROMPT_SEEN, 1);
    let sgrun_pid: i32 = t.display(s, "#{pane_pid}").parse().unwrap();
    // A background job (its own process group, same session) and a foreground command.
    t.line(s, "sleep 1001 &");
    t.wait_for(s, PROMPT_SEEN, 2);
    t.line(s, "trap '' HUP; sleep 1002");
    wait_procs(&c, 4);
    // The terminal goes away: the pane and its pty are destroyed.
    t.tmux(&["kill-session", "-t", s]);
    // Everything the session started is gone from the container, and sgrun from the host.
    wait_procs(&c, 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(sgrun_pid) {
        assert!(
            Instant::now() < deadline,
            "sgrun exec {sgrun_pid} survived its terminal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exec_names_what_is_missing() {
    let env = TestEnv::new("execmiss");
    let c = env.container("m", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();

    // Users and groups by name come from the container's /etc/passwd and /etc/group.
    let out = c.exec(&["-u", "www-data"], &["id"]);
    assert!(
        out.ok()
            .stdout
            .contains("uid=33(www-data) gid=33(www-data)"),
        "{out}"
    );
    let out = c.exec(&["-u", "www-data:root"], &["id", "-g"]);
    assert_eq!(out.ok().stdout_trim(), "0", "{out}");

    let out = c.exec(&["-u", "nosuchuser"], &["id"]);
    out.failed()
        .stderr_has(&["nosuchuser", "/etc/passwd", "does not exist"]);
    let out = c.exec(&["-u", "33:nosuchgroup"], &["id"]);
    out.failed().stderr_has(&["nosuchgroup", "/etc/group"]);
    let out = c.exec(&["-u", "33:"], &["id"]);
    out.failed().stderr_has(&["33:"]);

    // A command that does not exist, by name and by path.
    let out = c.exec(&[], &["nosuchcommand", "arg"]);
    out.failed().stderr_has(&["nosuchcommand", "not found"]);
    let out = c.exec(&[], &["/usr/bin/nosuchcommand"]);
    out.failed().stderr_has(&["/usr/bin/nosuchcommand"]);

    // An unknown container.
    let out = env.sg.run(["exec", "no-such-container", "true"]);
    out.failed().stderr_has(&["no-such-container"]);

    // None of these left a process behind.
    assert_eq!(procs(&c).len(), 1, "a refused exec left a process");
}
