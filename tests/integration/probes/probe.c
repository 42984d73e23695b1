/*
 * probe: issue one system call from inside a container and report what the kernel said, so a
 * test can tell "allowed" from "denied by seccomp" without side effects it cannot undo.
 *
 * Usage: probe SYSCALL [ARG...]
 *   personality VALUE      personality(VALUE); VALUE is decimal or 0x-hex
 *   mkdir PATH             mkdir(PATH, 0755)
 *   unshare FLAGS          unshare(FLAGS)
 *   getpid                 getpid()
 *
 * Output: "ok <return value>" (exit 0), or "errno <n> <text>" (exit 1). A usage error exits 2.
 * Built with `cc -static` by the test harness at test time; it uses raw syscall(2) so glibc
 * cannot substitute another call (e.g. mkdirat for mkdir).
 */
#define _GNU_SOURCE
#include <errno.h>
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
