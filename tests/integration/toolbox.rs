//! The SRE's toolbox: `ps` (host and container pids, users), `stats` (CPU %, memory, pids,
//! IO, network), `events` (exits, OOM kills, pids-limit hits, restarts, deletes), `inspect`
//! (the resolved configuration) and `logs` (says there is none), with their bad input.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sgrun_tests::{RunOpts, TestEnv, USERNS_HOST_ID};

#[test]
fn ps_shows_host_and_container_pids_and_users() {
    let env = TestEnv::new("tbps");
    let c = env.container("p", env.bundle().args(&["sleep", "1000"]).userns());
    c.run_detached();
    c.exec(&["-d", "-u", "www-data"], &["sleep", "999"]).ok();
    let out = env.sg.run(["ps", &c.id]);
    let text = out.ok().stdout.clone();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["PID", "CPID", "USER", "UID", "HOSTUID", "STAT", "TIME", "COMMAND"],
        "{out}"
    );
    let row = |needle: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row with {needle}: {text}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let init = row("sleep 1000");
    assert_eq!(init[0], c.pid().to_string(), "host pid: {text}");
    assert_eq!(&init[1..5], ["1", "root", "0", &USERNS_HOST_ID.to_string()]);
    let web = row("sleep 999");
    assert_eq!(
        &web[2..5],
        ["www-data", "33", &(USERNS_HOST_ID + 33).to_string()],
        "{text}"
    );
    assert_ne!(web[1], "1");

    // --format json stays runc's list of host pids; --detail gives the rows.
    let pids = env.sg.run(["ps", "--format", "json", &c.id]).ok().json();
    assert_eq!(pids.as_array().unwrap().len(), 2, "{pids}");
    let rows = env
        .sg
        .run(["ps", "--format", "json", "--detail", &c.id])
        .ok()
        .json();
    let web = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == "sleep 999")
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(web["user"], "www-data");
    assert_eq!(web["host_uid"], USERNS_HOST_ID + 33);
}

fn stats_of(env: &TestEnv, id: &str) -> Value {
    let v = env
        .sg
        .run(["stats", "--no-stream", "--json", id])
        .ok()
        .json();
    v.as_array().unwrap()[0].clone()
}

#[test]
fn stats_reports_cpu_memory_pids_and_network() {
    let env = TestEnv::new("tbstats");
    let c = env.container(
        "s",
        env.bundle()
            .args(&["sleep", "1000"])
            .resources(json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 20}})),
    );
    c.run_detached();
    let s = stats_of(&env, &c.id);
    assert_eq!(s["id"], c.id.as_str());
    assert_eq!(s["memory_limit_bytes"], 64 << 20, "{s}");
    assert_eq!(s["pids"], 1, "{s}");
    assert_eq!(s["pids_limit"], 20, "{s}");
    assert!(s["memory_bytes"].as_u64().unwrap() > 0, "{s}");
    assert!(
        s["cpu_percent"].as_f64().unwrap() < 20.0,
        "an idle container: {s}"
    );
    for k in [
        "io_read_bytes",
        "io_write_bytes",
        "oom_kills",
        "pids_limit_hits",
    ] {
        assert!(s[k].is_u64(), "{k}: {s}");
    }
    let lo_rx = s["net"]["lo"]["rx_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("the container's own lo: {s}"));

    // A busy loop shows as CPU, and traffic on the container's loopback as network.
    c.exec(&["-d"], &["sh", "-c", "while :; do :; done"]).ok();
    c.exec_sh("nc 127.0.0.1 1 </dev/null; true").ok();
    let s = stats_of(&env, &c.id);
    assert!(
        s["cpu_percent"].as_f64().unwrap() > 20.0,
        "a busy loop uses CPU: {s}"
    );
    assert_eq!(s["pids"], 2, "{s}");
    assert!(
        s["net"]["lo"]["rx_bytes"].as_u64().unwrap() > lo_rx,
        "loopback traffic counted: {s}"
    );

    // The table, for all running containers of this root.
    let out = env.sg.run(["stats", "--no-stream"]);
    let text = out.ok().stdout.clone();
    assert!(text.starts_with("ID"), "{out}");
    assert!(text.contains("CPU %") && text.contains("NET I/O"), "{out}");
    let row = text.lines().find(|l| l.starts_with(&c.id)).unwrap();
    assert!(row.contains("64.0MiB") && row.contains("2 / 20"), "{row}");

    // Streaming: a reading every interval until stopped.
    let run = env
        .sg
        .spawn(["stats", "--json", "--interval", "200ms", &c.id]);
    std::thread::sleep(Duration::from_millis(1500));
    let pid = run.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = run.wait(Duration::from_secs(5));
    assert!(
        out.stdout.lines().count() >= 3,
        "several readings streamed: {out}"
    );

    // Bad input: unknown and stopped containers.
    env.sg
        .run(["stats", "--no-stream", "no-such-ctr"])
        .failed()
        .stderr_has(&["no-such-ctr", "does not exist"]);
    c.sg().run(["kill", &c.id, "KILL"]).ok();
    c.wait_status("stopped");
    env.sg
        .run(["stats", "--no-stream", &c.id])
        .failed()
        .stderr_has(&[&c.id, "stopped"]);
}

#[test]
fn events_report_pids_limit_oom_exit_and_delete() {
    let env = TestEnv::new("tbevents");
    let c = env.container(
        "e",
        env.bundle().args(&["sleep", "1000"]).resources(json!({
            "memory": {"limit": 32 << 20, "swap": 32 << 20},
            "pids": {"limit": 6}
        })),
    );
    c.run_detached();
    let events = env.sg.spawn(["events", &c.id]);
    std::thread::sleep(Duration::from_millis(500));

    // A pipeline that buffers 200 MB in a 32 MB container: the OOM killer ends it.
    let out = c.exec_sh("head -c 200000000 /dev/zero | tail -n 1 >/dev/null");
    assert_eq!(out.code, 137, "tail is OOM-killed (SIGKILL): {out}");
    // Forks past the pids limit are refused and counted (last: the shell gives up at the
    // first refused fork, and its orphans stay as zombies of an init that does not reap).
    let out = c.exec_sh("for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait");
    assert!(out.stderr.contains("can't fork"), "{out}");
    std::thread::sleep(Duration::from_millis(500));
    c.sg().run(["kill", &c.id, "KILL"]).ok();
    c.wait_status("stopped");
    std::thread::sleep(Duration::from_millis(500));
    c.sg().run(["delete", &c.id]).ok();
    // After the delete, `events ID` has nothing more to say and ends.
    let out = events.wait(Duration::from_secs(10));
    let evs: Vec<Value> = out
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |t: &str| evs.iter().filter(|e| e["type"] == t).collect::<Vec<_>>();
    let pl = of("pids-limit");
    assert!(!pl.is_empty(), "a pids-limit event: {out}");
    assert_eq!(pl[0]["limit"], 6);
    assert!(pl[0]["refused_forks"].as_u64().unwrap() >= 1);
    let oom = of("oom");
    assert!(!oom.is_empty(), "an oom event: {out}");
    assert!(oom[0]["kills"].as_u64().unwrap() >= 1);
    assert_eq!(of("exit").len(), 1, "{out}");
    assert_eq!(of("delete").len(), 1, "{out}");
    for e in &evs {
        assert_eq!(e["id"], c.id.as_str());
        assert!(e["time"].is_string(), "{e}");
    }
}

#[test]
fn events_of_all_containers_report_starts_and_restarts() {
    let env = TestEnv::new("tbevall");
    let mut events = std::process::Command::new(sgrun_tests::sgrun_bin())
        .arg("--root")
        .arg(&env.sg.root)
        .args(["events", "--interval", "100ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let c = env.container("r", env.bundle().args(&["sleep", "1000"]));
    let wait_for = |needle: &str, got: &mut String, stdout: &mut std::process::ChildStdout| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !got.contains(needle) {
            assert!(Instant::now() < deadline, "no {needle} event in: {got}");
            let mut buf = [0u8; 4096];
            let n = stdout.read(&mut buf).unwrap();
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    let mut stdout = events.stdout.take().unwrap();
    let mut got = String::new();
    c.run_detached();
    wait_for("\"type\":\"start\"", &mut got, &mut stdout);
    // The same id, a new init: delete and run again faster than the poll sees the gap is a
    // restart; slower, a delete then a start. Either way the new pid is reported.
    c.sg().run(["delete", "-f", &c.id]).ok();
    c.run_detached();
    let pid = c.pid();
    wait_for(&format!("\"pid\":{pid}"), &mut got, &mut stdout);
    let _ = events.kill();
    let _ = events.wait();
    assert!(
        got.contains("\"type\":\"restart\"") || got.contains("\"type\":\"delete\""),
        "{got}"
    );
}

#[test]
fn inspect_shows_the_resolved_configuration() {
    let env = TestEnv::new("tbinspect");
    let c = env.container(
        "i",
        env.bundle()
            .args(&["sleep", "1000"])
            .userns()
            .annotation("io.sgrun.profile", "wordpress")
            .resources(json!({"memory": {"limit": 128 << 20}, "pids": {"limit": 64}})),
    );
    c.run_detached();
    let v = env.sg.run(["inspect", &c.id]).ok().json();
    assert_eq!(v["id"], c.id.as_str());
    assert_eq!(v["status"], "running");
    assert_eq!(v["profile"], "wordpress", "{v}");
    assert_eq!(
        v["user_namespace"]["uid_mappings"][0],
        json!({"container": 0, "host": USERNS_HOST_ID, "size": 65536}),
        "{v}"
    );
    assert_eq!(v["limits"]["memory"]["limit"], 128 << 20, "{v}");
    assert_eq!(v["limits"]["pids"]["limit"], 64, "{v}");
    assert!(v["seccomp"]["rules"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/proc"),
        "{v}"
    );
    assert_eq!(v["annotations"]["io.sgrun.profile"], "wordpress");
    assert!(v["process"]["capabilities"]["bounding"].is_array(), "{v}");
    assert!(v.get("tenant").is_some(), "{v}");

    env.sg
        .run(["inspect", "no-such-ctr"])
        .failed()
        .stderr_has(&["no-such-ctr", "does not exist"]);
}

#[test]
fn logs_says_where_the_output_goes() {
    let env = TestEnv::new("tblogs");
    let c = env.container("l", env.bundle().args(&["sleep", "1000"]));
    c.run_detached();
    env.sg
        .run(["logs", &c.id])
        .failed()
        .stderr_has(&[&c.id, "no log", "stdout"]);
    env.sg
        .run(["logs", "--since", "yesterday", &c.id])
        .failed()
        .stderr_has(&["--since", "yesterday"]);
    env.sg
        .run_with(["logs", "no-such-ctr"], RunOpts::default())
        .failed()
        .stderr_has(&["no-such-ctr", "does not exist"]);
}
