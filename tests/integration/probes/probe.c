/*
 * probe: issue one system call from inside a container and report what the kernel said, so a
 * test can tell "allowed" from "denied by seccomp" without side effects it cannot undo.
 *
 * Usage: probe SYSCALL [ARG...]
 *   personality VALUE      personality(VALUE); VALUE is decimal or 0x-hex
 *   mkdir PATH             mkdir(PATH, 0755)
 *   unshare FLAGS          unshare(FLAGS)
 *   getpid                 getpid()
 *   calls                  every probe of the profile tests, one line each:
 *                          "NAME ok" or "NAME errno N" (always exit 0)
 *   btrfs DIR              the four btrfs ioctls that make a subvolume, for real, in DIR
 *                          (a subvolume root: the snapshots are of DIR itself), one line
 *                          each as for `calls`: subvol-create (makes DIR/sub1),
 *                          subvol-create-v2 (DIR/sub2), snap-create (DIR/snap1),
 *                          snap-create-v2 (DIR/snap2). Always exit 0 once DIR opens.
 *   projid DIR [ID]        FS_IOC_FSGETXATTR: prints "ok <project id>"; with ID,
 *                          FS_IOC_FSSETXATTR re-tags DIR to project ID (other flags kept):
 *                          "ok 0" or "errno N <text>".
 *   race SECONDS LOG       the CVE-2016-9962 attacker: for SECONDS, watch /proc for new
 *                          processes and, until each runs a program of the image (its exe ends
 *                          in "busybox"), keep trying to read /proc/PID/exe and the links in /proc/PID/fd
 *                          and to open /proc/PID/mem. Appends to LOG: "start", then per pid
 *                          "seen PID", "denied PID errno N" (first refusal), "reached PID
 *                          exe=TARGET fds=LINKS" when the kernel let it in before the program
 *                          of the image ran, "clean PID" once it runs one; "end" at the end.
 *
 * Output: "ok <return value>" (exit 0), or "errno <n> <text>" (exit 1). A usage error exits 2.
 * Built with `cc -static` by the test harness at test time; it uses raw syscall(2) so glibc
 * cannot substitute another call (e.g. mkdirat for mkdir).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long number(const char *s)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 0);
    if (errno || *end) {
        fprintf(stderr, "probe: %s is not a number\n", s);
        exit(2);
    }
    return v;
}

/*
 * Side-effect-free probes (the bubblewrap try-syscall idea): arguments are chosen so that the
 * kernel itself fails the call with EFAULT, EBADF or EINVAL (or ENOSYS where this kernel lacks
 * the feature) after its permission checks, given every capability. So EPERM or ENOSYS where
 * the kernel would say something else is the filter speaking. personality() is the exception:
 * it succeeds without a filter, which only changes this short-lived process.
 */
#define BAD ((long)1)
struct call {
    const char *name;
    long nr;
    long a[6];
};
static const struct call CALLS[] = {
    {"mount", SYS_mount, {BAD, BAD, BAD, 0, 0}},
    {"umount2", SYS_umount2, {0, -1}},
    {"pivot_root", SYS_pivot_root, {BAD, BAD}},
    {"move_mount", SYS_move_mount, {-1, BAD, -1, BAD, -1}},
    {"open_tree", SYS_open_tree, {-1, BAD, -1}},
    {"fsopen", SYS_fsopen, {BAD, -1}},
    {"fsmount", SYS_fsmount, {-1, -1, 0}},
    {"fsconfig", SYS_fsconfig, {-1, -1, 0, 0, 0}},
    {"mount_setattr", SYS_mount_setattr, {-1, BAD, -1, 0, 0}},
    {"unshare", SYS_unshare, {1}},
    {"setns", SYS_setns, {-1, 0}},
    /* CLONE_NEWUSER | CLONE_THREAD without CLONE_SIGHAND: EINVAL, no process made. */
    {"clone", SYS_clone, {0x10000000 | 0x10000, 0, 0, 0, 0}},
    {"clone3", SYS_clone3, {0, 0}},
    {"ptrace", SYS_ptrace, {0xffff, -1, 0, 0}},
    {"process_vm_readv", SYS_process_vm_readv, {0, 0, 0, 0, 0, -1}},
    {"process_vm_writev", SYS_process_vm_writev, {0, 0, 0, 0, 0, -1}},
    {"keyctl", SYS_keyctl, {0xffff}},
    {"add_key", SYS_add_key, {BAD, BAD, 0, 0, 0}},
    {"request_key", SYS_request_key, {BAD, BAD, 0, 0}},
    {"bpf", SYS_bpf, {0xffff, 0, 0}},
    {"perf_event_open", SYS_perf_event_open, {BAD, 0, -1, -1, 0}},
    {"userfaultfd", SYS_userfaultfd, {-1}},
    {"kexec_load", SYS_kexec_load, {0, 0, 0, -1}},
    {"kexec_file_load", SYS_kexec_file_load, {-1, -1, 0, BAD, -1}},
    {"init_module", SYS_init_module, {BAD, 0, BAD}},
    {"finit_module", SYS_finit_module, {-1, BAD, -1}},
    {"delete_module", SYS_delete_module, {BAD, -1}},
    {"open_by_handle_at", SYS_open_by_handle_at, {-1, BAD, 0}},
    {"name_to_handle_at", SYS_name_to_handle_at, {-1, BAD, BAD, BAD, -1}},
    {"iopl", SYS_iopl, {0xff}},
    {"ioperm", SYS_ioperm, {-1, 1, 1}},
    {"swapon", SYS_swapon, {BAD, 0}},
    {"swapoff", SYS_swapoff, {BAD}},
    {"reboot", SYS_reboot, {0, 0, 0, 0}},
    {"acct", SYS_acct, {BAD}},
    {"quotactl", SYS_quotactl, {-1, BAD, 0, 0}},
    {"lookup_dcookie", SYS_lookup_dcookie, {0, 0, 0}},
    {"syslog", SYS_syslog, {0xff, 0, 0}},
    {"settimeofday", SYS_settimeofday, {BAD, BAD}},
    {"clock_settime", SYS_clock_settime, {0xff, 0}},
    {"clock_adjtime", SYS_clock_adjtime, {0xff, BAD}},
    {"adjtimex", SYS_adjtimex, {BAD}},
    {"personality", SYS_personality, {0x0040000}},
    /* btrfs BTRFS_IOC_SUBVOL_CREATE and TIOCSTI on a bad descriptor: EBADF. */
    {"ioctl-btrfs-subvol-create", SYS_ioctl, {-1, 0x5000940e, 0}},
    {"ioctl-tiocsti", SYS_ioctl, {-1, 0x5412, 0}},
    {"io_uring_setup", SYS_io_uring_setup, {0, BAD}},
    {"io_uring_enter", SYS_io_uring_enter, {-1, 0, 0, 0, 0, 0}},
    {"io_uring_register", SYS_io_uring_register, {-1, 0, 0, 0}},
    /* Unlisted in the tenant classes: ENOSYS under them. */
    {"ustat", SYS_ustat, {0, BAD}},
    {"socket-unix-bad-type", SYS_socket, {1, 0xffff, 0}},
    /* Allowed everywhere: fails with EBADF. */
    {"fstat-bad-fd", SYS_fstat, {-1, BAD}},
};

/* struct btrfs_ioctl_vol_args and _v2 of <linux/btrfs.h>: 4096 bytes each. */
struct vol_args {
    long long fd;
    char name[4088];
};
struct vol_args_v2 {
    long long fd;
    unsigned long long transid, flags, unused[4];
    char name[4040];
};

static int btrfs_calls(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) {
        printf("open errno %d %s\n", errno, strerror(errno));
        return 1;
    }
    struct vol_args a;
    struct vol_args_v2 b;
    struct { const char *probe, *name; unsigned long req; int v2, snap; } calls[] = {
        {"subvol-create", "sub1", 0x5000940eUL, 0, 0},
        {"subvol-create-v2", "sub2", 0x50009418UL, 1, 0},
        {"snap-create", "snap1", 0x50009401UL, 0, 1},
        {"snap-create-v2", "snap2", 0x50009417UL, 1, 1},
    };
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        void *arg;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        if (calls[i].v2) {
            b.fd = calls[i].snap ? fd : 0;
            strcpy(b.name, calls[i].name);
            arg = &b;
        } else {
            a.fd = calls[i].snap ? fd : 0;
            strcpy(a.name, calls[i].name);
            arg = &a;
        }
        long r = syscall(SYS_ioctl, fd, calls[i].req, arg);
        if (r == -1)
            printf("%s errno %d\n", calls[i].probe, errno);
        else
            printf("%s ok\n", calls[i].probe);
    }
    return 0;
}

/* struct fsxattr of <linux/fs.h>: 28 bytes. */
struct fsxattr_ {
    unsigned int xflags, extsize, nextents, projid, cowextsize;
    unsigned char pad[8];
};

static int projid(const char *dir, const char *id)
{
    struct fsxattr_ x;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || syscall(SYS_ioctl, fd, 0x801c581fUL, &x) == -1) {
        printf("errno %d %s\n", errno, strerror(errno));
        return 1;
    }
    if (!id) {
        printf("ok %u\n", x.projid);
        return 0;
    }
    x.projid = (unsigned int)number(id);
    if (syscall(SYS_ioctl, fd, 0x401c5820UL, &x) == -1) {
        printf("errno %d %s\n", errno, strerror(errno));
        return 1;
    }
    printf("ok 0\n");
    return 0;
}

static int all_calls(void)
{
    for (size_t i = 0; i < sizeof CALLS / sizeof CALLS[0]; i++) {
        const struct call *c = &CALLS[i];
        long r = syscall(c->nr, c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);
        if (r == -1)
            printf("%s errno %d\n", c->name, errno);
        else
            printf("%s ok\n", c->name);
    }
    return 0;
}


/* The attacker of `race` (see the usage above). Read-only: it never writes to its targets. */
#define RACE_MAX 4096
static int race_log_fd = -1;
static void race_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void race_log(const char *fmt, ...)
{
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    if (write(race_log_fd, line, n) < 0)
        _exit(3);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int race(const char *seconds, const char *log)
{
    race_log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (race_log_fd < 0) {
        perror(log);
        return 2;
    }
    /* state per pid: 0 unseen, 1 watching (denied so far), 2 watching, 3 done */
    static unsigned char state[1 << 22];
    pid_t self = getpid();
    time_t end = time(NULL) + (time_t)number(seconds);
    /* Everything alive at start is not a target (the init, us). */
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        long pid = strtol(e->d_name, NULL, 10);
        if (pid > 0 && pid < (1 << 22))
            state[pid] = 3;
    }
    if (d)
        closedir(d);
    race_log("start");
    while (time(NULL) < end) {
        d = opendir("/proc");
        if (!d)
            return 2;
        while ((e = readdir(d))) {
            long pid = strtol(e->d_name, NULL, 10);
            if (pid <= 0 || pid >= (1 << 22) || pid == self || state[pid] == 3)
                continue;
            if (state[pid] == 0) {
                race_log("seen %ld", pid);
                state[pid] = 2;
            }
            char path[64], exe[4096];
            /* /proc/PID/exe is the gate: reading it needs the same ptrace access as the fd
             * links and mem, and it is the CVE-2019-5736 handle itself. Checked first and
             * alone, so that an execve between two checks cannot be mistaken for a hole. */
            snprintf(path, sizeof path, "/proc/%ld/exe", pid);
            ssize_t n = readlink(path, exe, sizeof exe - 1);
            if (n < 0) {
                int err = errno;
                if (err == ENOENT || err == ESRCH) {
                    state[pid] = 3;
                } else if (state[pid] == 2) {
                    race_log("denied %ld errno %d", pid, err);
                    state[pid] = 1;
                }
                continue;
            }
            exe[n] = 0;
            if (ends_with(exe, "busybox")) {
                race_log("clean %ld", pid);
                state[pid] = 3;
                continue;
            }
            snprintf(path, sizeof path, "/proc/%ld/mem", pid);
            int mem = open(path, O_RDONLY | O_CLOEXEC);
            if (mem >= 0)
                close(mem);
            /* In before the image's program: collect what the fds are. */
            char fds[4096] = "";
            snprintf(path, sizeof path, "/proc/%ld/fd", pid);
            DIR *fd = opendir(path);
            struct dirent *f;
            while (fd && (f = readdir(fd))) {
                if (f->d_name[0] == '.')
                    continue;
                char lp[300], target[512];
                snprintf(lp, sizeof lp, "/proc/%ld/fd/%s", pid, f->d_name);
                ssize_t m = readlink(lp, target, sizeof target - 1);
                target[m < 0 ? 0 : m] = 0;
                size_t used = strlen(fds);
                snprintf(fds + used, sizeof fds - used, "%s%s=%s", used ? "," : "", f->d_name,
                         m < 0 ? "?" : target);
            }
            if (fd)
                closedir(fd);
            race_log("reached %ld exe=%s mem=%s fds=%s", pid, exe, mem >= 0 ? "open" : "denied", fds);
            state[pid] = 3;
        }
        closedir(d);
    }
    race_log("end");
    return 0;
}

int main(int argc, char **argv)
{
    long ret;
    if (argc < 2) {
        fprintf(stderr, "usage: probe SYSCALL [ARG...]\n");
        return 2;
    }
    const char *call = argv[1];
    if (!strcmp(call, "personality") && argc == 3)
        ret = syscall(SYS_personality, number(argv[2]));
    else if (!strcmp(call, "mkdir") && argc == 3)
        ret = syscall(SYS_mkdir, argv[2], 0755);
    else if (!strcmp(call, "unshare") && argc == 3)
        ret = syscall(SYS_unshare, number(argv[2]));
    else if (!strcmp(call, "getpid") && argc == 2)
        ret = syscall(SYS_getpid);
    else if (!strcmp(call, "calls") && argc == 2)
        return all_calls();
    else if (!strcmp(call, "btrfs") && argc == 3)
        return btrfs_calls(argv[2]);
    else if (!strcmp(call, "race") && argc == 4)
        return race(argv[2], argv[3]);
    else if (!strcmp(call, "projid") && (argc == 3 || argc == 4))
        return projid(argv[2], argc == 4 ? argv[3] : NULL);
    else {
        fprintf(stderr, "probe: unknown call or wrong arguments: %s\n", call);
        return 2;
    }
    if (ret == -1) {
        int e = errno;
        printf("errno %d %s\n", e, strerror(e));
        return 1;
    }
    printf("ok %ld\n", ret);
    return 0;
}
