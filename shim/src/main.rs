//! containerd-shim-sgrun-v1: containerd's shim v2 Task API over the `sgrun` runtime.
//!
//! containerd finds this binary on its PATH as runtime `io.containerd.sgrun.v1`, runs it with
//! `start` to get a socket address (one daemon per site), talks ttrpc to that daemon, and runs
//! it with `delete` to clean up after a daemon that died. See docs/shim.md.

mod error;
mod events_sink;
mod log;
mod oom;
mod options;
mod reaper;
mod restart;
mod runtime;
mod service;
mod site;
mod stats;
mod stdio;

fn main() -> anyhow::Result<()> {
    // One thread. The shim is idle nearly always; each worker thread would cost stack and
    // allocator arenas in private memory, multiplied by every site on the host. Blocking work
    // (rootfs mounts) goes to tokio's blocking pool, whose threads exit when idle.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()?;
    // Set here, not in Shim::new: the crate installs its signal handlers before it calls new,
    // and its own SIGCHLD loop would race ours (reaper.rs) for every child's status.
    let config = containerd_shim::Config {
        no_reaper: true,
        no_setup_logger: true,
        ..Default::default()
    };
    rt.block_on(containerd_shim::asynchronous::run::<service::SgrunShim>(
        "io.containerd.sgrun.v1",
        Some(config),
    ));
    Ok(())
}
