//! sgrun integration tests: real containers as root on this kernel, driven only through the
//! `sgrun` binary (build it first: `cargo build -p sgrun`). Run with
//! `cargo test -p sgrun-tests` (tests run in parallel; each uses its own state root, ids and
//! cgroup paths under /sgrun-test, and cleans up even when it fails).
//!
//! Security tests come in pairs: the secure configuration must stop the attempt, and a
//! deliberately weakened one (no user namespace, no seccomp, all capabilities, …) must let it
//! through, which proves the probe can see the hole it guards against.

mod bad_input;
mod cgroups;
mod cli;
mod config;
mod exec;
mod exec_security;
mod images;
mod lifecycle;
mod limits;
mod profiles;
mod rootfs;
mod seccomp;
mod security;
mod shim_site;
mod tenants;
mod tmux;
mod toolbox;
mod tty;
