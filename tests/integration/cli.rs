//! `features` and `spec`.

use std::fs;

use serde_json::json;
use sgrun_tests::{rootfs, TestEnv, CGROUP_PARENT};

#[test]
fn features_document() {
    let env = TestEnv::new("features");
    let out = env.sg.run(["features"]);
    let v = out.ok().json();
    assert_eq!(v["linux"]["seccomp"]["enabled"], true, "{v}");
    assert!(
        v["ociVersionMin"].is_string() && v["ociVersionMax"].is_string(),
        "{v}"
    );
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    for want in ["pid", "mount", "network", "ipc", "uts", "user", "cgroup"] {
        assert!(ns.contains(&want), "{want} missing from {ns:?}");
    }
    let actions = v["linux"]["seccomp"]["actions"]
        .as_array()
        .expect("seccomp.actions");
    assert!(
        !actions.contains(&json!("SCMP_ACT_NOTIFY")),
        "NOTIFY is refused, so not advertised: {v}"
    );
    assert!(
        v["hooks"]
            .as_array()
            .is_some_and(|h| h.contains(&json!("poststop"))),
        "{v}"
    );
}

#[test]
fn spec_writes_a_runnable_config_and_never_overwrites() {
    let env = TestEnv::new("spec");
    let dir = env.path().join("spec-bundle");
    fs::create_dir(&dir).unwrap();
    let out = env.sg.run(["spec", "--bundle", dir.to_str().unwrap()]);
    out.ok();
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).expect("spec wrote config.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert!(
        v["ociVersion"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );

    // Make it runnable here, as a user would: root path, a command, no terminal, a cgroup.
    let id = env.new_id("s");
    v["root"]["path"] = json!(rootfs());
    v["process"]["args"] = json!(["sh", "-c", "echo spec-ok"]);
    v["process"]["terminal"] = json!(false);
    v["linux"]["cgroupsPath"] = json!(format!("{CGROUP_PARENT}/{id}"));
    fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let guard = Cleanup {
        env: &env,
        id: id.clone(),
    };
    let out = env.sg.run(["run", "--bundle", dir.to_str().unwrap(), &id]);
    assert_eq!(out.code, 0, "run accepts the config `spec` wrote: {out}");
    assert_eq!(out.stdout.trim(), "spec-ok", "{out}");
    drop(guard);

    // A second spec refuses and leaves the file alone.
    let before = fs::read(&path).unwrap();
    let out = env.sg.run(["spec", "--bundle", dir.to_str().unwrap()]);
    out.failed().stderr_has(&["config.json", "exists"]);
    assert_eq!(
        fs::read(&path).unwrap(),
        before,
        "spec overwrote config.json"
    );
}

/// Cleanup for a container started outside [`TestEnv::container`].
struct Cleanup<'a> {
    env: &'a TestEnv,
    id: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self
            .env
            .sg
            .try_run_with(["delete", "-f", &self.id], Default::default());
        sgrun_tests::remove_cgroup(&format!("{CGROUP_PARENT}/{}", self.id));
    }
}
