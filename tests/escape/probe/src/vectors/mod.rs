//! The catalogue of vectors, in the order they run. Ids are stable: the driver's weakened
//! tests and docs/escape-catalogue.md refer to them.

use crate::env::Hints;
use crate::tap::Outcome;

pub mod host;
pub mod info;
pub mod limits;
pub mod peer;

pub type Vector = fn(&Hints) -> Outcome;

pub const ALL: &[(&str, Vector)] = &[
    ("runtime-binary-write", host::runtime_binary_write),
    ("leaked-fds", host::leaked_fds),
    ("cwd-outside-root", host::cwd_outside_root),
    ("cgroup-release-agent", host::cgroup_release_agent),
    ("mount-family", host::mount_family),
    ("open-by-handle-at", host::open_by_handle_at),
    ("device-nodes", host::device_nodes),
    ("new-namespaces", host::new_namespaces),
    ("setns", host::setns),
    ("ptrace-peer", peer::ptrace_peer),
    ("process-vm", peer::process_vm),
    ("proc-sys-write", host::proc_sys_write),
    ("sys-write", host::sys_write),
    ("sysrq", host::sysrq),
    ("kcore", host::kcore),
    ("kernel-modules", host::kernel_modules),
    ("kexec", host::kexec),
    ("bpf", host::bpf),
    ("perf-event-open", host::perf_event_open),
    ("userfaultfd", host::userfaultfd),
    ("io-uring", host::io_uring),
    ("keyctl", host::keyctl),
    ("capabilities", host::capabilities),
    ("no-new-privs", host::no_new_privs),
    ("host-root", host::host_root),
    ("peer-files", peer::peer_files),
    ("peer-proc-root", peer::peer_proc_root),
    ("peer-signal", peer::peer_signal),
    ("peer-network", peer::peer_network),
    ("peer-abstract-socket", peer::peer_abstract_socket),
    ("peer-sysv-ipc", peer::peer_sysv_ipc),
    ("peer-posix-shm", peer::peer_posix_shm),
    ("host-secret", host::host_secret),
    ("mountinfo-host-paths", info::mountinfo_host_paths),
    ("host-processes", info::host_processes),
    ("kernel-addresses", info::kernel_addresses),
    ("host-cgroup-tree", info::host_cgroup_tree),
    ("memory-limit", limits::memory_limit),
    ("pids-limit", limits::pids_limit),
    ("disk-limit", limits::disk_limit),
];
