//! Vectors against the host itself: the runtime binary, descriptors and directories that
//! lead outside the root, the mount and namespace calls, kernel interfaces, privileges.

use std::time::Duration;

use crate::env::{need, Hints};
use crate::sys::{
    self, check, cstr, ename, errno, in_child, mountinfo, open, open_result, Child, Fd,
};
use crate::tap::Outcome;

const CHILD_TIMEOUT: Duration = Duration::from_secs(5);

/// Errnos that mean the kernel or the filter refused the call before doing anything.
fn refused(e: i32) -> bool {
    matches!(e, libc::EPERM | libc::EACCES | libc::ENOSYS)
}

/// The verdict for a call probed with arguments the kernel rejects only after its
/// permission check: EPERM/EACCES/ENOSYS = defended; anything else (EBADF, EFAULT,
/// EINVAL, success) = the call got through the filter and the capability check.
fn past_permission(name: &str, r: Result<libc::c_long, i32>) -> Outcome {
    match r {
        Err(e) if refused(e) => Outcome::defended(format!("{name} -> {}", ename(e))),
        Err(e) => Outcome::open(format!(
            "{name} -> {} (the call got past the permission check)",
            ename(e)
        )),
        Ok(v) => Outcome::open(format!("{name} -> returned {v}")),
    }
}

/// CVE-2019-5736: a container process opening the runtime's binary for writing, by its
/// host path or through /proc/<pid>/exe of a runtime process it can see.
pub fn runtime_binary_write(h: &Hints) -> Outcome {
    let runtime = match need(&h.runtime, "ESCAPE_RUNTIME") {
        Ok(r) => r,
        Err(o) => return o,
    };
    let mut details = Vec::new();
    let mut open_holes = Vec::new();
    let direct = open(runtime, libc::O_WRONLY);
    let direct_desc = format!("open({runtime}, O_WRONLY) -> {}", open_result(&direct));
    if direct.is_ok() {
        open_holes.push(direct_desc.clone());
    }
    let runtime_name = runtime.rsplit('/').next().unwrap_or(runtime).to_string();
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut tried = 0;
    for pid in sys::visible_pids() {
        if pid == me {
            continue;
        }
        let exe_link = format!("/proc/{pid}/exe");
        let Some(target) = sys::readlink(&exe_link) else {
            continue;
        };
        let looks_like_runtime =
            target.contains("sgrun") || target.ends_with(&format!("/{runtime_name}"));
        tried += 1;
        let r = open(&exe_link, libc::O_WRONLY);
        let line = format!(
            "open({exe_link} -> {target}, O_WRONLY) -> {}",
            open_result(&r)
        );
        match (&r, looks_like_runtime) {
            (Ok(_), true) => open_holes.push(line),
            (Err(libc::ETXTBSY), true) => {
                // ETXTBSY only means "not while it runs": the 2019 exploit waits for the
                // process to exit. Defended only if the binary sits on a read-only mount.
                let ro = sys::on_readonly_mount(&exe_link).unwrap_or(false);
                if ro {
                    details.push(format!("{line}; binary on a read-only mount"));
                } else {
                    open_holes.push(format!("{line} but the binary is on a writable mount"));
                }
            }
            (Ok(_), false) => details.push(format!(
                "{line} (not the runtime; the container's own file)"
            )),
            _ => details.push(line),
        }
    }
    details.insert(
        0,
        format!("{tried} other visible processes' /proc/PID/exe tried"),
    );
    if open_holes.is_empty() {
        Outcome::defended(format!("{direct_desc} and via /proc/*/exe -> not writable"))
            .with(details)
    } else {
        Outcome::open(format!(
            "runtime binary writable: {}",
            open_holes.join("; ")
        ))
        .with(details)
    }
}

/// The (st_dev, st_ino) of the container's root, what a walk up must end at.
fn root_id() -> Option<(u64, u64)> {
    sys::stat("/").map(|s| (s.st_dev, s.st_ino))
}

/// Walks up from a directory fd with openat(".."), as CVE-2024-21626 exploits do, and
/// says where the walk ends: at the container's root (fine) or somewhere else (escape).
fn walk_up_escapes(dirfd: i32) -> Option<String> {
    let root = root_id()?;
    let dotdot = cstr("..");
    // SAFETY: dup of a valid fd; the copy is owned by `cur` and closed on drop.
    let mut cur = Fd(unsafe { libc::fcntl(dirfd, libc::F_DUPFD_CLOEXEC, 0) });
    for _ in 0..256 {
        let st = sys::fstat(cur.0)?;
        if (st.st_dev, st.st_ino) == root {
            return None;
        }
        // SAFETY: cur.0 is a valid directory fd and dotdot a NUL-terminated name.
        let up = unsafe {
            libc::openat(
                cur.0,
                dotdot.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if up < 0 {
            return None;
        }
        let up = Fd(up);
        let ust = sys::fstat(up.0)?;
        if (ust.st_dev, ust.st_ino) == (st.st_dev, st.st_ino) {
            // ".." of a directory is itself only at a filesystem root that is not ours.
            return Some(format!(
                "walk up ended at a root (dev {}, ino {}) that is not the container's",
                st.st_dev, st.st_ino
            ));
        }
        cur = up;
    }
    Some("walk up did not reach the container's root in 256 steps".to_string())
}

/// CVE-2024-21626: descriptors the runtime leaked into the container that name files or
/// directories outside its root.
pub fn leaked_fds(_: &Hints) -> Outcome {
    let mut details = Vec::new();
    let mut leaks = Vec::new();
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd <= 2 {
            continue;
        }
        let Some(st) = sys::fstat(fd) else { continue }; // the read_dir's own fd, now closed
        let target = sys::readlink(&format!("/proc/self/fd/{fd}")).unwrap_or_default();
        let line = format!("fd {fd} -> {target}");
        if !target.starts_with('/') {
            details.push(format!("{line} (not a path)"));
            continue;
        }
        let same =
            sys::stat(&target).is_some_and(|t| (t.st_dev, t.st_ino) == (st.st_dev, st.st_ino));
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            if let Some(why) = walk_up_escapes(fd) {
                leaks.push(format!("{line}: {why}"));
                continue;
            }
        }
        if same {
            details.push(format!("{line} (inside the container)"));
        } else {
            leaks.push(format!("{line}: no such file inside the container"));
        }
    }
    if leaks.is_empty() {
        Outcome::defended("open fds > 2 checked -> none leads outside the root").with(details)
    } else {
        Outcome::open(format!("leaked fds: {}", leaks.join("; "))).with(details)
    }
}

/// CVE-2024-21626 too: a working directory left outside the root.
pub fn cwd_outside_root(_: &Hints) -> Outcome {
    let cwd = std::env::current_dir();
    let cwd_s = match &cwd {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(e) => return Outcome::open(format!("getcwd() -> {e}: the cwd is not under the root")),
    };
    if cwd_s.starts_with("(unreachable)") {
        return Outcome::open(format!("getcwd() -> {cwd_s}"));
    }
    match open(".", libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => match walk_up_escapes(fd.0) {
            Some(why) => Outcome::open(format!("getcwd() -> {cwd_s}; {why}")),
            None => Outcome::defended(format!(
                "getcwd() -> {cwd_s}; walking up reaches the container's root"
            )),
        },
        Err(e) => Outcome::defended(format!("getcwd() -> {cwd_s}; open(\".\") -> {}", ename(e))),
    }
}

/// True if this process has CAP_SYS_ADMIN in the initial user namespace: the capability
/// is effective and uid 0 maps to the host's whole uid range (no user namespace).
fn initial_admin() -> bool {
    let eff = sys::status_field("CapEff")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0);
    let map = sys::read("/proc/self/uid_map").unwrap_or_default();
    let identity = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    eff & (1 << 21) != 0 && identity
}

/// A scratch directory in the container's own /tmp, for mount attempts. When /tmp is
/// read-only, /tmp itself is the target: a mount there (in a child, unmounted at once)
/// only ever covers the container's own /tmp.
fn scratch_dir(name: &str) -> (String, bool) {
    let dir = format!("/tmp/.escape-probe-{name}-{}", std::process::id());
    match std::fs::create_dir(&dir) {
        Ok(()) => (dir, true),
        Err(_) => ("/tmp".to_string(), false),
    }
}

fn remove_scratch(dir: &(String, bool)) {
    if dir.1 {
        let _ = std::fs::remove_dir(&dir.0);
    }
}

/// A mount attempt that failed only because the target was missing says nothing.
fn inconclusive(c: &Child) -> bool {
    matches!(c, Child::Exited(e) if *e == libc::ENOENT || *e == libc::ENOTDIR)
}

/// Tries mount(2) of `fstype` on a scratch directory in a child; unmounts at once if it
/// worked. Only the container's own /tmp is touched.
fn try_mount(fstype: &str, data: &str, dir: &str) -> Child {
    let (src, fs, target, data) = (cstr("none"), cstr(fstype), cstr(dir), cstr(data));
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
    in_child(CHILD_TIMEOUT, || {
        // SAFETY: all strings are NUL-terminated; the target is our own scratch directory.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fs.as_ptr(),
                flags,
                data.as_ptr() as *const libc::c_void,
            )
        };
        if r < 0 {
            return errno();
        }
        // SAFETY: unmounting what this child just mounted.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        0
    })
}

/// CVE-2022-0492: a writable release_agent in a cgroup v1 hierarchy, or the right to mount
/// one (which, with a new user and cgroup namespace, gave root on the host).
pub fn cgroup_release_agent(_: &Hints) -> Outcome {
    let mut details = Vec::new();
    let mut holes = Vec::new();
    for m in mountinfo().iter().filter(|m| m.fstype == "cgroup") {
        let p = format!("{}/release_agent", m.mount_point);
        let r = open(&p, libc::O_WRONLY);
        let line = format!("open({p}, O_WRONLY) -> {}", open_result(&r));
        if r.is_ok() && initial_admin() {
            holes.push(line);
        } else if r.is_ok() {
            // The kernel checks at write time that the opener has CAP_SYS_ADMIN in the
            // initial user namespace; the open alone (a rw mount, a root-owned 0644 file)
            // proves nothing more, but is worth seeing.
            details.push(format!("{line}, but writing needs CAP_SYS_ADMIN in the initial user namespace, which this process lacks"));
        } else if sys::stat(&p).is_some() {
            details.push(line);
        }
    }
    // The first v1 controller this process is in: mounting an existing hierarchy again
    // creates nothing new on the host.
    let controller = sys::read("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::to_string))
        .find(|c| !c.is_empty() && !c.starts_with("name="))
        .and_then(|c| c.split(',').next().map(str::to_string));
    let dir = scratch_dir("cg");
    let mount = match &controller {
        Some(c) => {
            let r = try_mount("cgroup", c, &dir.0);
            let line = format!(
                "mount(cgroup, -o {c}, ro, on {}) -> {}",
                dir.0,
                r.describe()
            );
            if matches!(r, Child::Exited(0)) || inconclusive(&r) {
                holes.push(line.clone());
            }
            line
        }
        None => "no cgroup v1 controller in /proc/self/cgroup; mount not tried".to_string(),
    };
    remove_scratch(&dir);
    if holes.is_empty() {
        Outcome::defended(format!("no writable release_agent; {mount}")).with(details)
    } else {
        Outcome::open(holes.join("; ")).with(details)
    }
}

/// The mount family: mount(2) and the new mount API, tried for real on a scratch dir.
pub fn mount_family(_: &Hints) -> Outcome {
    let dir = scratch_dir("mnt");
    let m = try_mount("tmpfs", "size=4k", &dir.0);
    remove_scratch(&dir);
    let fs = cstr("tmpfs");
    // fsopen only creates a filesystem context (no mount), after checking CAP_SYS_ADMIN.
    let f = in_child(CHILD_TIMEOUT, || {
        // SAFETY: fsopen with a NUL-terminated name and no flags; the fd dies with the child.
        let r = unsafe { libc::syscall(libc::SYS_fsopen, fs.as_ptr(), 0) };
        if r < 0 {
            errno()
        } else {
            0
        }
    });
    // open_tree with an invalid flag: EINVAL only if the filter let it through.
    let slash = cstr("/");
    // SAFETY: path "/" is NUL-terminated; the bad flag makes the kernel reject the call.
    let ot = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            slash.as_ptr(),
            0x8000_0000u32,
        )
    });
    let summary = format!(
        "mount(tmpfs on {}) -> {}; fsopen(tmpfs) -> {}",
        dir.0,
        m.describe(),
        f.describe()
    );
    let detail = format!(
        "open_tree(/, bad flags) -> {} (EINVAL = not filtered by seccomp)",
        ot.map(|v| v.to_string()).unwrap_or_else(ename)
    );
    let open_hole =
        matches!(m, Child::Exited(0)) || inconclusive(&m) || matches!(f, Child::Exited(0));
    Outcome::new(!open_hole, summary).detail(detail)
}

/// "Shocker": open_by_handle_at opens files by inode, around the mount tree.
pub fn open_by_handle_at(_: &Hints) -> Outcome {
    const MAX_HANDLE: usize = 128;
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        data: [u8; MAX_HANDLE],
    }
    let mut h = Handle {
        bytes: MAX_HANDLE as u32,
        kind: 0,
        data: [0; MAX_HANDLE],
    };
    let mut mount_id = 0;
    let slash = cstr("/");
    // SAFETY: h is a valid file_handle with room for MAX_HANDLE bytes; mount_id is valid.
    let r = check(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            slash.as_ptr(),
            &mut h as *mut Handle,
            &mut mount_id as *mut i32,
            0,
        )
    });
    if let Err(e) = r {
        if refused(e) {
            return Outcome::defended(format!("name_to_handle_at(/) -> {}", ename(e)));
        }
        // Filesystems without handles answer EOPNOTSUPP: try the permission check alone.
        let bad: *const u8 = std::ptr::null();
        // SAFETY: a NULL handle makes the kernel fail with EFAULT or refuse with EPERM.
        let r = check(unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                libc::AT_FDCWD,
                bad,
                libc::O_RDONLY,
            )
        });
        return past_permission("open_by_handle_at(AT_FDCWD, NULL)", r)
            .detail(format!("name_to_handle_at(/) -> {}", ename(e)));
    }
    let root = match open("/", libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return Outcome::open(format!("cannot open / to use as mount fd: {}", ename(e))),
    };
    // SAFETY: h was filled by the kernel; root.0 is a valid fd on the same mount.
    let r = check(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            root.0,
            &h as *const Handle,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    });
    match r {
        Err(e) if refused(e) => {
            Outcome::defended(format!("open_by_handle_at(handle of /) -> {}", ename(e)))
        }
        Err(e) => Outcome::open(format!(
            "open_by_handle_at(handle of /) -> {} (got past the permission check)",
            ename(e)
        )),
        Ok(fd) => {
            let fd = Fd(fd as i32);
            let st = sys::fstat(fd.0);
            let ino = st.map(|s| s.st_ino).unwrap_or(0);
            Outcome::open(format!("open_by_handle_at(handle of /) -> opened (ino {ino}): files can be opened by handle"))
        }
    }
}

/// Device nodes: dangerous ones present in /dev, and mknod of the host's root disk.
pub fn device_nodes(_: &Hints) -> Outcome {
    let mut holes = Vec::new();
    let mut details = Vec::new();
    for p in [
        "/dev/mem",
        "/dev/kmem",
        "/dev/port",
        "/dev/kmsg",
        "/dev/sda",
        "/dev/vda",
        "/dev/nvme0n1",
        "/dev/dm-0",
    ] {
        let r = open(p, libc::O_RDONLY | libc::O_NONBLOCK);
        match r {
            Ok(_) => holes.push(format!("open({p}) -> opened")),
            Err(libc::ENOENT) => {}
            Err(e) => details.push(format!("open({p}) -> {}", ename(e))),
        }
    }
    // The block device of the filesystem /tmp is on (on a plain bind-mount rootfs that is
    // the host's disk): mknod it in /tmp and open it read-only, never reading.
    let dev = sys::stat("/tmp").map(|s| s.st_dev).unwrap_or(0);
    let node = format!("/tmp/.escape-probe-blk-{}", std::process::id());
    let p = cstr(&node);
    // SAFETY: p is NUL-terminated; the node is created in the container's own /tmp.
    let r = unsafe { libc::mknod(p.as_ptr(), libc::S_IFBLK | 0o600, dev) };
    let mk = if r == 0 {
        let o = open(&node, libc::O_RDONLY | libc::O_NONBLOCK);
        let s = format!(
            "mknod(block {}:{}) -> created; open -> {}",
            libc::major(dev),
            libc::minor(dev),
            open_result(&o)
        );
        let _ = std::fs::remove_file(&node);
        if o.is_ok() {
            holes.push(s.clone());
        }
        s
    } else {
        format!(
            "mknod(block {}:{}) -> {}",
            libc::major(dev),
            libc::minor(dev),
            ename(errno())
        )
    };
    // The device cgroup (v1) says which nodes may be opened at all, whatever mknod does.
    for m in mountinfo()
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "devices"))
    {
        let list = format!("{}/devices.list", m.mount_point);
        if let Some(text) = sys::read(&list) {
            if text
                .lines()
                .any(|l| l.starts_with("a ") || l.trim() == "b *:* rwm" || l.trim() == "c *:* rwm")
            {
                holes.push(format!(
                    "{list} allows every device: {}",
                    text.lines().next().unwrap_or("")
                ));
            } else {
                details.push(format!(
                    "{list}: {} rules, no wildcard read/write",
                    text.lines().count()
                ));
            }
        }
    }
    if holes.is_empty() {
        Outcome::defended(format!("/dev/mem, /dev/kmem, disks not openable; {mk}")).with(details)
    } else {
        Outcome::open(holes.join("; ")).with(details)
    }
}

/// New namespaces: each unshare in its own child. A new user namespace is where most
/// kernel escapes start (it hands out capabilities over new mount/net namespaces).
pub fn new_namespaces(_: &Hints) -> Outcome {
    let flags = [
        ("NEWUSER", libc::CLONE_NEWUSER),
        ("NEWNS", libc::CLONE_NEWNS),
        ("NEWNET", libc::CLONE_NEWNET),
        ("NEWPID", libc::CLONE_NEWPID),
        ("NEWIPC", libc::CLONE_NEWIPC),
        ("NEWUTS", libc::CLONE_NEWUTS),
        ("NEWCGROUP", libc::CLONE_NEWCGROUP),
    ];
    let mut results = Vec::new();
    let mut worked = Vec::new();
    for (name, flag) in flags {
        let r = in_child(CHILD_TIMEOUT, || {
            // SAFETY: unshare in a child that exits right after; the probe is unaffected.
            if unsafe { libc::unshare(flag) } == 0 {
                0
            } else {
                errno()
            }
        });
        if matches!(r, Child::Exited(0)) {
            worked.push(name);
        }
        results.push(format!("{name} -> {}", r.describe()));
    }
    let summary = format!("unshare(CLONE_{})", results.join(", "));
    Outcome::new(worked.is_empty(), summary)
}

/// setns: joining a namespace, tried on our own (harmless) and on the peer's.
pub fn setns(h: &Hints) -> Outcome {
    let own = open("/proc/self/ns/net", libc::O_RDONLY);
    let own_r = match &own {
        Ok(fd) => {
            let fd = fd.0;
            in_child(CHILD_TIMEOUT, || {
                // SAFETY: joining our own net namespace in a child changes nothing.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0 {
                    0
                } else {
                    errno()
                }
            })
            .describe()
        }
        Err(e) => format!("open /proc/self/ns/net -> {}", ename(*e)),
    };
    let own_ok = own_r == "succeeded";
    let peer = match need(&h.peer_pid, "ESCAPE_PEER_PID") {
        Ok(pid) => {
            let p = format!("/proc/{pid}/ns/net");
            match open(&p, libc::O_RDONLY) {
                Ok(fd) => {
                    let fd = fd.0;
                    let r = in_child(CHILD_TIMEOUT, || {
                        // SAFETY: in a child only; the child exits at once whatever happens.
                        if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } == 0 {
                            0
                        } else {
                            errno()
                        }
                    });
                    (
                        matches!(r, Child::Exited(0)),
                        format!("setns({p}) -> {}", r.describe()),
                    )
                }
                Err(e) => (false, format!("open({p}) -> {}", ename(e))),
            }
        }
        Err(o) => (true, o.summary),
    };
    let missing = h.peer_pid.is_none();
    let summary = format!("setns(own netns) -> {own_r}; {}", peer.1);
    Outcome::new(!own_ok && !peer.0 && !missing, summary)
}

/// Files under /proc/sys that are not namespaced: writing them changes the host.
pub fn proc_sys_write(_: &Hints) -> Outcome {
    write_open_all(&[
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/modprobe",
        "/proc/sys/kernel/panic",
        "/proc/sys/vm/drop_caches",
        "/proc/sys/fs/binfmt_misc/register",
    ])
}

/// /sys knobs that act on the host (uevent_helper runs a program as root on the host).
pub fn sys_write(_: &Hints) -> Outcome {
    write_open_all(&[
        "/sys/kernel/uevent_helper",
        "/sys/power/state",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ])
}

pub fn sysrq(_: &Hints) -> Outcome {
    write_open_all(&["/proc/sysrq-trigger"])
}

/// Opens each path O_WRONLY and closes it without writing. A path masked with /dev/null
/// opens fine but is harmless, so character devices count as defended.
fn write_open_all(paths: &[&str]) -> Outcome {
    let mut lines = Vec::new();
    let mut holes = false;
    for p in paths {
        let r = open(p, libc::O_WRONLY | libc::O_NONBLOCK);
        let what = match &r {
            Ok(fd) => {
                let masked =
                    sys::fstat(fd.0).is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFCHR);
                if masked {
                    "opened, but masked by a device node".to_string()
                } else {
                    holes = true;
                    "opened for write".to_string()
                }
            }
            Err(e) => ename(*e),
        };
        lines.push(format!("{p} -> {what}"));
    }
    Outcome::new(
        !holes,
        format!("open O_WRONLY (no write): {}", lines.join(", ")),
    )
}

/// /proc/kcore is the kernel's memory as an ELF core file.
pub fn kcore(_: &Hints) -> Outcome {
    match open("/proc/kcore", libc::O_RDONLY) {
        Err(e) => Outcome::defended(format!("open(/proc/kcore) -> {}", ename(e))),
        Ok(fd) => {
            let st = sys::fstat(fd.0);
            let masked =
                st.is_some_and(|s| s.st_mode & libc::S_IFMT == libc::S_IFCHR || s.st_size == 0);
            Outcome::new(
                masked,
                format!(
                    "open(/proc/kcore) -> opened, {}",
                    if masked {
                        "masked (empty or /dev/null)"
                    } else {
                        "the real kcore"
                    }
                ),
            )
        }
    }
}

pub fn kernel_modules(_: &Hints) -> Outcome {
    let empty = cstr("");
    let null: *const libc::c_void = std::ptr::null();
    // init_module with length 0 fails ENOEXEC after the CAP_SYS_MODULE check; finit_module
    // with fd -1 fails EBADF; delete_module with a NULL name fails EFAULT.
    // SAFETY: every call has arguments the kernel rejects before loading anything.
    let a = check(unsafe { libc::syscall(libc::SYS_init_module, null, 0usize, empty.as_ptr()) });
    // SAFETY: as above.
    let b = check(unsafe { libc::syscall(libc::SYS_finit_module, -1, empty.as_ptr(), 0) });
    // SAFETY: as above.
    let c = check(unsafe { libc::syscall(libc::SYS_delete_module, null, libc::O_NONBLOCK) });
    combine(&[
        ("init_module(NULL, 0)", a),
        ("finit_module(-1)", b),
        ("delete_module(NULL)", c),
    ])
}

pub fn kexec(_: &Hints) -> Outcome {
    let null: *const libc::c_void = std::ptr::null();
    // An unknown low flag bit makes kexec_load fail EINVAL after the CAP_SYS_BOOT check
    // (zero segments with valid flags would unload a loaded kernel, so never that).
    // SAFETY: the bad flags make the kernel reject the call before acting.
    let a = check(unsafe {
        libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, null, 0x0000_8000usize)
    });
    // SAFETY: as above; kexec_file_load checks permission, then its flags.
    let b = check(unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1,
            -1,
            0usize,
            null,
            0x8000_0000usize,
        )
    });
    combine(&[
        ("kexec_load(bad flags)", a),
        ("kexec_file_load(bad flags)", b),
    ])
}

/// Several calls, each probed past its permission check; the vector is open if any got through.
fn combine(calls: &[(&str, Result<libc::c_long, i32>)]) -> Outcome {
    let outcomes: Vec<Outcome> = calls.iter().map(|(n, r)| past_permission(n, *r)).collect();
    let defended = outcomes.iter().all(|o| o.defended);
    let summary = outcomes
        .iter()
        .map(|o| o.summary.clone())
        .collect::<Vec<_>>()
        .join("; ");
    Outcome::new(defended, summary)
}

pub fn bpf(_: &Hints) -> Outcome {
    const BPF_PROG_LOAD: i32 = 5;
    let null: *const libc::c_void = std::ptr::null();
    // A zeroed attribute of size 0: the kernel refuses EPERM without CAP_BPF (unprivileged
    // bpf disabled) and EINVAL (no instructions) with it.
    // SAFETY: size 0 means the kernel reads nothing from the NULL pointer.
    let r = check(unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, null, 0u32) });
    past_permission("bpf(BPF_PROG_LOAD, NULL, 0)", r)
}

pub fn perf_event_open(_: &Hints) -> Outcome {
    // A real but harmless event: the software dummy counter on this process only.
    #[repr(C)]
    struct Attr {
        kind: u32,
        size: u32,
        config: u64,
        rest: [u64; 14],
    }
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_COUNT_SW_DUMMY: u64 = 9;
    const EXCLUDE_KERNEL_HV: u64 = (1 << 5) | (1 << 6);
    let mut attr = Attr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<Attr>() as u32,
        config: PERF_COUNT_SW_DUMMY,
        rest: [0; 14],
    };
    // The flags bitfield follows sample_period, sample_type and read_format; bit 0 = disabled.
    attr.rest[3] = EXCLUDE_KERNEL_HV | 1;
    // SAFETY: attr is a valid perf_event_attr of the size it declares.
    let r = check(unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const Attr,
            0,
            -1,
            -1,
            0,
        )
    });
    match r {
        Ok(fd) => {
            drop(Fd(fd as i32));
            Outcome::open("perf_event_open(software dummy, self) -> opened")
        }
        Err(e) => Outcome::new(
            refused(e),
            format!("perf_event_open(software dummy, self) -> {}", ename(e)),
        ),
    }
}

pub fn userfaultfd(_: &Hints) -> Outcome {
    // Without UFFD_USER_MODE_ONLY: the variant that can stall the kernel on a page fault,
    // which is what exploits use.
    // SAFETY: plain call; a returned fd is closed at once.
    let r = check(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) });
    let dev = open("/dev/userfaultfd", libc::O_RDONLY);
    let dev_s = format!("open(/dev/userfaultfd) -> {}", open_result(&dev));
    match r {
        Ok(fd) => {
            drop(Fd(fd as i32));
            Outcome::open(format!("userfaultfd(O_CLOEXEC) -> fd; {dev_s}"))
        }
        Err(e) => Outcome::new(
            refused(e) && dev.is_err(),
            format!("userfaultfd(O_CLOEXEC) -> {}; {dev_s}", ename(e)),
        ),
    }
}

pub fn io_uring(_: &Hints) -> Outcome {
    let null: *const libc::c_void = std::ptr::null();
    // SAFETY: a NULL params pointer makes the kernel fail EFAULT once the call is allowed.
    let r = check(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, null) });
    past_permission("io_uring_setup(1, NULL)", r)
}

pub fn keyctl(_: &Hints) -> Outcome {
    // An operation number the kernel does not know: EOPNOTSUPP means the call reached
    // the keyring code, which is not namespaced.
    // SAFETY: the unknown operation touches nothing.
    let r = check(unsafe { libc::syscall(libc::SYS_keyctl, 9999, 0, 0, 0, 0) });
    past_permission("keyctl(9999)", r)
}

/// Capabilities that turn a container into the host, or let it read or steer it.
/// DAC_OVERRIDE, NET_RAW and AUDIT_WRITE (in Docker's default set) are left out: with
/// the container's own mount, network and user namespaces they act on the container only.
const DANGEROUS: &[(u32, &str)] = &[
    (2, "DAC_READ_SEARCH"),
    (12, "NET_ADMIN"),
    (16, "SYS_MODULE"),
    (17, "SYS_RAWIO"),
    (19, "SYS_PTRACE"),
    (21, "SYS_ADMIN"),
    (22, "SYS_BOOT"),
    (25, "SYS_TIME"),
    (27, "MKNOD"),
    (30, "AUDIT_CONTROL"),
    (33, "MAC_OVERRIDE"),
    (34, "MAC_ADMIN"),
    (35, "SYSLOG"),
    (38, "PERFMON"),
    (39, "BPF"),
    (40, "CHECKPOINT_RESTORE"),
];

fn dangerous_in(field: &str) -> Vec<&'static str> {
    let mask = sys::status_field(field)
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(u64::MAX);
    DANGEROUS
        .iter()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, n)| *n)
        .collect()
}

pub fn capabilities(_: &Hints) -> Outcome {
    let eff = dangerous_in("CapEff");
    let bnd = dangerous_in("CapBnd");
    let raw = format!(
        "CapEff={} CapBnd={}",
        sys::status_field("CapEff").unwrap_or_default(),
        sys::status_field("CapBnd").unwrap_or_default()
    );
    if eff.is_empty() && bnd.is_empty() {
        Outcome::defended(format!("{raw} -> no dangerous capability"))
    } else {
        let map = sys::read("/proc/self/uid_map").unwrap_or_default();
        let scope = if map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"] {
            "in the initial user namespace: they act on the host".to_string()
        } else {
            format!(
                "in a user namespace (uid_map {:?}): they act on what it owns",
                map.trim()
            )
        };
        Outcome::open(format!(
            "{raw} -> effective: [{}], bounding: [{}]",
            eff.join(" "),
            bnd.join(" ")
        ))
        .detail(format!("capabilities {scope}"))
    }
}

pub fn no_new_privs(_: &Hints) -> Outcome {
    let v = sys::status_field("NoNewPrivs").unwrap_or_default();
    Outcome::new(
        v == "1",
        format!("NoNewPrivs in /proc/self/status -> {v:?}"),
    )
}

/// Is the container's root the host's root? (A user namespace maps it elsewhere.)
pub fn host_root(_: &Hints) -> Outcome {
    let map = sys::read("/proc/self/uid_map").unwrap_or_default();
    let zero_to_zero = map.lines().any(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        f.len() == 3 && f[0] == 0 && f[1] == 0 && f[2] > 0
    });
    let compact = map.split_whitespace().collect::<Vec<_>>().join(" ");
    if zero_to_zero {
        Outcome::open(format!(
            "/proc/self/uid_map = {compact:?} -> uid 0 is the host's uid 0 (no user namespace)"
        ))
    } else {
        Outcome::defended(format!(
            "/proc/self/uid_map = {compact:?} -> uid 0 is not the host's root"
        ))
    }
}

/// A host file that must never be readable, by its host path and through every visible
/// process's root.
pub fn host_secret(h: &Hints) -> Outcome {
    let secret = match need(&h.host_secret, "ESCAPE_HOST_SECRET") {
        Ok(s) => s,
        Err(o) => return o,
    };
    let mut tries = vec![secret.to_string()];
    for pid in sys::visible_pids() {
        tries.push(format!("/proc/{pid}/root{secret}"));
    }
    let mut holes = Vec::new();
    let mut first = String::new();
    for p in &tries {
        let r = std::fs::read_to_string(p);
        let res = match &r {
            Ok(s) if s.contains("host-secret") => {
                holes.push(p.clone());
                "read the secret".to_string()
            }
            Ok(_) => "opened, other content".to_string(),
            Err(e) => ename(e.raw_os_error().unwrap_or(0)),
        };
        if first.is_empty() {
            first = format!("read({p}) -> {res}");
        }
    }
    if holes.is_empty() {
        Outcome::defended(format!(
            "{first}; also via {} /proc/PID/root paths -> not readable",
            tries.len() - 1
        ))
    } else {
        let n = holes.len();
        holes.truncate(3);
        Outcome::open(format!(
            "host secret read via {} ({n} paths in all)",
            holes.join(", ")
        ))
    }
}
