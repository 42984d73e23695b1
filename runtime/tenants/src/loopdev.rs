//! Loop devices through their ioctls (LOOP_CTL_GET_FREE, LOOP_CONFIGURE), and the mount
//! table. No `losetup`: one ioctl configures a device atomically (backing file, autoclear,
//! direct I/O), and a race with another process taking the same free device is an EBUSY we
//! retry, not a half-configured device.

use std::ffi::{CStr, CString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, TenantError};

const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_CAPACITY: libc::c_ulong = 0x4C07;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` of <linux/loop.h>.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of <linux/loop.h>.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Attach `image` to a free loop device and return the device path and an open fd on it.
///
/// The device is AUTOCLEAR: the kernel detaches it when its last user goes away. So once the
/// volume is mounted and the returned file is closed, unmounting is enough to free the
/// device, and a process that dies between attach and mount leaks nothing.
pub fn attach(image: &Path) -> Result<(PathBuf, File)> {
    let ctl_path = Path::new("/dev/loop-control");
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(ctl_path)
        .map_err(|source| TenantError::Loop {
            op: "open",
            device: ctl_path.into(),
            source,
        })?;
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)
        .map_err(TenantError::io("open volume image", image))?;
    // Another process may take the free device between GET_FREE and CONFIGURE (EBUSY): ask
    // again. A bounded number of tries so that a kernel bug cannot spin us forever.
    let mut last = None;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(TenantError::Loop {
                op: "LOOP_CTL_GET_FREE",
                device: ctl_path.into(),
                source: io::Error::last_os_error(),
            });
        }
        let device = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&device)
        {
            Ok(f) => f,
            // udev may not have made the node yet: make it ourselves (block major 7).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                mknod_loop(&device, n as u32)?;
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&device)
                    .map_err(|source| TenantError::Loop {
                        op: "open",
                        device: device.clone(),
                        source,
                    })?
            }
            Err(source) => {
                return Err(TenantError::Loop {
                    op: "open",
                    device,
                    source,
                })
            }
        };
        // SAFETY: LoopConfig is plain old data; all-zero is a valid value.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        // Direct I/O spares a second copy of the tenant's data in the page cache; the kernel
        // falls back to buffered I/O by itself where the backing file cannot do it.
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
        let name = image.as_os_str().as_bytes();
        let len = name.len().min(LO_NAME_SIZE - 1);
        cfg.info.lo_file_name[..len].copy_from_slice(&name[..len]);
        // SAFETY: LOOP_CONFIGURE reads a struct loop_config, which `cfg` is (repr(C), the
        // kernel's layout), and it outlives the call.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if rc == 0 {
            tracing::debug!(device = %device.display(), image = %image.display(), "loop device attached");
            return Ok((device, dev));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(TenantError::Loop {
                op: "LOOP_CONFIGURE",
                device,
                source: err,
            });
        }
        last = Some((device, err));
    }
    let (device, source) = last.expect("the loop ran at least once");
    Err(TenantError::Loop {
        op: "LOOP_CONFIGURE (every free device was taken by someone else)",
        device,
        source,
    })
}

fn mknod_loop(device: &Path, n: u32) -> Result<()> {
    let c = CString::new(device.as_os_str().as_bytes()).expect("no NUL in /dev/loopN");
    // SAFETY: mknod with a valid NUL-terminated path; makedev is pure arithmetic.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o660, libc::makedev(7, n)) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(TenantError::Loop {
                op: "mknod",
                device: device.into(),
                source: e,
            });
        }
    }
    Ok(())
}

/// Detach the device through an fd we hold. With AUTOCLEAR and the fd still open the kernel
/// defers the detach to the last close, which is immediately after.
pub fn detach(device: &Path, dev: &File) -> Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // ENXIO: not bound any more (someone else detached it): nothing to undo.
        if e.raw_os_error() != Some(libc::ENXIO) {
            return Err(TenantError::Loop {
                op: "LOOP_CLR_FD",
                device: device.into(),
                source: e,
            });
        }
    }
    Ok(())
}

/// Detach `device` only if its backing file is `image`: never touch anybody else's device.
pub fn detach_if_backed_by(device: &Path, image: &Path) -> Result<()> {
    if backing_file(device).as_deref() != Some(image) {
        return Ok(());
    }
    let dev = open_device(device)?;
    detach(device, &dev)
}

fn open_device(device: &Path) -> Result<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device)
        .map_err(|source| TenantError::Loop {
            op: "open",
            device: device.into(),
            source,
        })
}

/// Tell the loop driver that the backing file grew.
pub fn set_capacity(device: &Path) -> Result<()> {
    let dev = open_device(device)?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_CAPACITY) };
    if rc != 0 {
        return Err(TenantError::Loop {
            op: "LOOP_SET_CAPACITY",
            device: device.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The backing file of a loop device, from sysfs (None when it is not attached).
pub fn backing_file(device: &Path) -> Option<PathBuf> {
    let name = device.file_name()?.to_str()?;
    let text = fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// Every loop device whose backing file is `image`.
pub fn devices_backed_by(image: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("loop") {
            continue;
        }
        let dev = PathBuf::from(format!("/dev/{name}"));
        if backing_file(&dev).as_deref() == Some(image) {
            out.push(dev);
        }
    }
    out
}

/// A line of /proc/self/mountinfo that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The directory of the filesystem that is mounted (`/` unless a bind of a subdirectory).
    pub root: PathBuf,
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
    /// The filesystem's own options (`prjquota`, `errors=remount-ro`, …), comma-separated.
    pub super_options: String,
}

/// Undo mountinfo's octal escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let root = left.split(' ').nth(3)?;
            let target = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let source = r.next()?;
            let super_options = r.next().unwrap_or("");
            Some(MountEntry {
                root: PathBuf::from(unescape(root)),
                target: PathBuf::from(unescape(target)),
                fstype: fstype.to_string(),
                source: unescape(source),
                super_options: super_options.to_string(),
            })
        })
        .collect()
}

/// The topmost mount at `target`, if any.
pub fn mount_at(target: &Path) -> Option<MountEntry> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.target == target)
}

pub fn mount_ext4(device: &Path, target: &Path) -> Result<()> {
    // errors=remount-ro: a corrupt volume stops taking writes instead of spreading damage.
    mount_dev(device, target, c"ext4", c"errors=remount-ro")
}

/// Mount a block device `nosuid,nodev`: the filesystem holds tenant-written files, and no
/// setuid binary or device node on it may ever mean anything on the host.
pub fn mount_dev(device: &Path, target: &Path, fstype: &CStr, data: &CStr) -> Result<()> {
    let err = |source| TenantError::Mount {
        device: device.into(),
        target: target.into(),
        source,
    };
    let src = CString::new(device.as_os_str().as_bytes()).expect("device path has no NUL");
    let dst = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

/// Bind `source` (a directory inside a pool) at `target`, then make that mount `nosuid,nodev`.
/// Two calls because the kernel ignores every flag but MS_REC on the first MS_BIND; a failure
/// of the second undoes the first, so a bind without the flags never stays.
pub fn bind_mount(source: &Path, target: &Path) -> Result<()> {
    let err = |source_err| TenantError::Mount {
        device: source.into(),
        target: target.into(),
        source: source_err,
    };
    let einval = || io::Error::from_raw_os_error(libc::EINVAL);
    let src = CString::new(source.as_os_str().as_bytes()).map_err(|_| err(einval()))?;
    let dst = CString::new(target.as_os_str().as_bytes()).map_err(|_| err(einval()))?;
    // SAFETY: valid NUL-terminated paths; fstype and data may be NULL for a bind.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: as above; a remount names only the target.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            dst.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if let Err(u) = umount(target) {
            tracing::error!(target = %target.display(), error = %u, "cannot undo the bind mount");
        }
        return Err(err(e));
    }
    Ok(())
}

pub fn umount(target: &Path) -> Result<()> {
    let dst = CString::new(target.as_os_str().as_bytes()).map_err(|_| TenantError::Umount {
        target: target.into(),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    // No MNT_DETACH: a lazy unmount of a busy volume would let its loop device and image
    // live on unseen; a busy volume is reported instead.
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(dst.as_ptr(), libc::UMOUNT_NOFOLLOW) };
    if rc != 0 {
        return Err(TenantError::Umount {
            target: target.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn mountinfo_lines() {
        let text =
            "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext4 /dev/loop3 rw,errors=continue\n\
                    37 35 0:5 / /run rw shared:2 - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, Path::new("/mnt/a b"));
        assert_eq!(m[0].fstype, "ext4");
        assert_eq!(m[0].source, "/dev/loop3");
        assert_eq!(m[0].root, Path::new("/"));
        assert_eq!(m[0].super_options, "rw,errors=continue");
        assert_eq!(m[1].target, Path::new("/run"));
    }
}
