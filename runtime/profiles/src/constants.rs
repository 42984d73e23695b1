//! Symbolic constants a profile may use in argument conditions, so rules read as the man pages
//! do (`AF_UNIX`, `CLONE_NEWUSER`, `TIOCSTI`) instead of as magic numbers. Values are the
//! x86_64 kernel ABI's.

/// Every namespace flag clone(2) takes. `CLONE_NEWTIME` is left out: its bit (0x80) is part of
/// CSIGNAL in clone(2), and only clone3 and unshare read it as a namespace flag (both are denied
/// outright).
pub const CLONE_NAMESPACE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWNS", 0x0002_0000),
    ("CLONE_NEWCGROUP", 0x0200_0000),
    ("CLONE_NEWUTS", 0x0400_0000),
    ("CLONE_NEWIPC", 0x0800_0000),
    ("CLONE_NEWUSER", 0x1000_0000),
    ("CLONE_NEWPID", 0x2000_0000),
    ("CLONE_NEWNET", 0x4000_0000),
];

/// All of [`CLONE_NAMESPACE_FLAGS`] together.
pub const CLONE_NAMESPACES: u64 = 0x7e02_0000;

/// personality(2)'s query value: returns the persona, changes nothing.
pub const PERSONALITY_QUERY: u64 = 0xffff_ffff;

/// personality(2) flags that change how the kernel treats the process (ASLR, executable
/// reads, address limits, …), bits 17 to 27.
pub const PERSONALITY_FLAGS: &[(&str, u64)] = &[
    ("UNAME26", 0x0002_0000),
    ("ADDR_NO_RANDOMIZE", 0x0004_0000),
    ("FDPIC_FUNCPTRS", 0x0008_0000),
    ("MMAP_PAGE_ZERO", 0x0010_0000),
    ("ADDR_COMPAT_LAYOUT", 0x0020_0000),
    ("READ_IMPLIES_EXEC", 0x0040_0000),
    ("ADDR_LIMIT_32BIT", 0x0080_0000),
    ("SHORT_INODE", 0x0100_0000),
    ("WHOLE_SECONDS", 0x0200_0000),
    ("STICKY_TIMEOUTS", 0x0400_0000),
    ("ADDR_LIMIT_3GB", 0x0800_0000),
];

/// btrfs ioctls that create, delete or re-parent subvolumes and snapshots, or change quota
/// groups: a tenant on a btrfs volume could nest a subvolume outside its qgroup's limit.
pub const BTRFS_IOCTLS: &[(&str, u64)] = &[
    ("BTRFS_IOC_SNAP_CREATE", 0x5000_9401),
    ("BTRFS_IOC_SUBVOL_CREATE", 0x5000_940e),
    ("BTRFS_IOC_SNAP_DESTROY", 0x5000_940f),
    ("BTRFS_IOC_DEFAULT_SUBVOL", 0x4008_9413),
    ("BTRFS_IOC_SNAP_CREATE_V2", 0x5000_9417),
    ("BTRFS_IOC_SUBVOL_CREATE_V2", 0x5000_9418),
    ("BTRFS_IOC_SUBVOL_SETFLAGS", 0x4008_941a),
    ("BTRFS_IOC_SET_RECEIVED_SUBVOL", 0xc0c8_9425),
    ("BTRFS_IOC_QUOTA_CTL", 0xc010_9428),
    ("BTRFS_IOC_QGROUP_ASSIGN", 0x4018_9429),
    ("BTRFS_IOC_QGROUP_CREATE", 0x4010_942a),
    ("BTRFS_IOC_QGROUP_LIMIT", 0x8030_942b),
    ("BTRFS_IOC_SNAP_DESTROY_V2", 0x5000_943f),
];

/// Terminal ioctls that inject input into, or reconfigure, a terminal another process reads.
pub const TTY_INJECTION_IOCTLS: &[(&str, u64)] = &[("TIOCSTI", 0x5412), ("TIOCLINUX", 0x541c)];

/// Everything else a rule may name.
const OTHER: &[(&str, u64)] = &[
    ("CLONE_NAMESPACES", CLONE_NAMESPACES),
    ("CLONE_NEWTIME", 0x80),
    ("CLONE_VM", 0x100),
    ("CLONE_FS", 0x200),
    ("CLONE_FILES", 0x400),
    ("CLONE_SIGHAND", 0x800),
    ("CLONE_THREAD", 0x1_0000),
    ("AF_UNIX", 1),
    ("AF_INET", 2),
    ("AF_INET6", 10),
    ("AF_NETLINK", 16),
    ("AF_PACKET", 17),
    ("AF_ALG", 38),
    ("AF_VSOCK", 40),
    ("NETLINK_ROUTE", 0),
    ("PER_LINUX", 0),
    ("PER_LINUX32", 8),
    ("PERSONALITY_QUERY", PERSONALITY_QUERY),
    ("TCGETS", 0x5401),
    ("TCSETS", 0x5402),
    ("TCSETSW", 0x5403),
    ("TCSETSF", 0x5404),
    ("TIOCSCTTY", 0x540e),
    ("TIOCGPGRP", 0x540f),
    ("TIOCSPGRP", 0x5410),
    ("TIOCGWINSZ", 0x5413),
    ("TIOCSWINSZ", 0x5414),
    ("FIONREAD", 0x541b),
    ("FIONBIO", 0x5421),
    ("FIONCLEX", 0x5450),
    ("FIOCLEX", 0x5451),
    ("FIOASYNC", 0x5452),
    ("TIOCGPTN", 0x8004_5430),
    ("TIOCSPTLCK", 0x4004_5431),
    ("FS_IOC_GETFLAGS", 0x8008_6601),
];

/// The value of one symbolic name.
fn lookup(name: &str) -> Option<u64> {
    [
        CLONE_NAMESPACE_FLAGS,
        PERSONALITY_FLAGS,
        BTRFS_IOCTLS,
        TTY_INJECTION_IOCTLS,
        OTHER,
    ]
    .iter()
    .flat_map(|table| table.iter())
    .find(|(n, _)| *n == name)
    .map(|(_, v)| *v)
}

/// `"A|B|C"` or a single name: the bitwise OR of the named constants. `Err` names the first
/// part that is not a known constant.
pub fn resolve(expr: &str) -> Result<u64, String> {
    expr.split('|').try_fold(0u64, |acc, part| {
        let part = part.trim();
        lookup(part).map(|v| acc | v).ok_or_else(|| part.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_constant_is_every_flag() {
        let all = CLONE_NAMESPACE_FLAGS.iter().fold(0, |a, (_, v)| a | v);
        assert_eq!(all, CLONE_NAMESPACES);
    }

    #[test]
    fn expressions() {
        assert_eq!(resolve("AF_UNIX"), Ok(1));
        assert_eq!(resolve("CLONE_NEWNS | CLONE_NEWPID"), Ok(0x2002_0000));
        assert_eq!(resolve("CLONE_NEWNS|NOPE"), Err("NOPE".into()));
    }

    #[test]
    fn ioctl_numbers_follow_the_ioc_encoding() {
        // _IOC(dir, type, nr, size) = dir << 30 | size << 16 | type << 8 | nr
        let ioc = |dir: u64, nr: u64, size: u64| dir << 30 | size << 16 | 0x94 << 8 | nr;
        let vol_args = 4096; // struct btrfs_ioctl_vol_args(_v2)
        assert_eq!(resolve("BTRFS_IOC_SNAP_CREATE"), Ok(ioc(1, 1, vol_args)));
        assert_eq!(resolve("BTRFS_IOC_SUBVOL_CREATE"), Ok(ioc(1, 14, vol_args)));
        assert_eq!(
            resolve("BTRFS_IOC_SNAP_CREATE_V2"),
            Ok(ioc(1, 23, vol_args))
        );
        assert_eq!(
            resolve("BTRFS_IOC_SUBVOL_CREATE_V2"),
            Ok(ioc(1, 24, vol_args))
        );
        assert_eq!(
            resolve("BTRFS_IOC_SNAP_DESTROY_V2"),
            Ok(ioc(1, 63, vol_args))
        );
        assert_eq!(resolve("BTRFS_IOC_QUOTA_CTL"), Ok(ioc(3, 40, 16)));
        assert_eq!(resolve("BTRFS_IOC_QGROUP_LIMIT"), Ok(ioc(2, 43, 48)));
    }
}
