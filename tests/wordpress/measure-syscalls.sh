#!/bin/bash
# Measure the syscalls the WordPress site uses under sgrun: run tests/wordpress/run.sh (cold
# start, flow, clean stop, warm start, clean stop) under a seccomp profile whose default
# action is SCMP_ACT_LOG, and read the kernel's type=1326 audit records.
#
# Usage: tests/wordpress/measure-syscalls.sh OUT_FILE      (as root; env as for run.sh)
#
# The kernel rate-limits those records (printk_ratelimit: 10 per 5 s; a single run makes
# about 100 000 and prints about 30), so one run cannot list them all. Each round allows
# (SCMP_ACT_ALLOW) the names found so far and logs only the rest; rounds go on until one
# logs nothing new from the site's programs. Host settings are left alone.
# Records of other processes (other tests on the machine) are told apart by their exe=
# path: only the programs of the image count (paths under /root, /work, /home, /tmp and
# /var/tmp are host binaries).
set -euo pipefail

die() { echo "measure-syscalls: error: $*" >&2; exit 1; }
[[ $# -eq 1 ]] || die "usage: $0 OUT_FILE"
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v scmp_sys_resolver >/dev/null || die "scmp_sys_resolver is missing: apt-get install seccomp"
[[ $(id -u) -eq 0 ]] || die "must run as root"

work=$(mktemp -d)
dmesg_pid=''
trap '[[ -n $dmesg_pid ]] && kill "$dmesg_pid" 2>/dev/null; rm -rf "$work"' EXIT
: >"$work/names"
max_rounds=${MAX_ROUNDS:-30}

for round in $(seq 1 "$max_rounds"); do
    allow=$(jq -Rsc 'split("\n") | map(select(. != ""))' "$work/names")
    filter=".linux.seccomp = {defaultAction: \"SCMP_ACT_LOG\", architectures: [\"SCMP_ARCH_X86_64\"],
        syscalls: (if ($allow | length) > 0 then [{names: $allow, action: \"SCMP_ACT_ALLOW\"}] else [] end)}"
    filter=${filter//\$allow/$allow}
    dmesg -W >"$work/dmesg" 2>/dev/null &
    dmesg_pid=$!
    sleep 0.3
    if ! EXTRA_JQ="${EXTRA_JQ:+$EXTRA_JQ | }$filter" "$here/run.sh" >"$work/run.log" 2>&1; then
        tail -n 30 "$work/run.log" >&2
        die "round $round: run.sh failed under the logging profile (above)"
    fi
    sleep 1
    kill "$dmesg_pid" 2>/dev/null || true
    wait "$dmesg_pid" 2>/dev/null || true
    dmesg_pid=''
    # type=1326 records of the image's programs, native x86_64 numbers only.
    grep 'type=1326' "$work/dmesg" |
        grep -vE 'exe="/(root|work|home|tmp|var/tmp)/' |
        sed -n 's/.* syscall=\([0-9]*\) compat=0 .*/\1/p' | sort -un >"$work/nums" || true
    : >"$work/new"
    while read -r num; do
        ((num < 1073741824)) || continue
        name=$(scmp_sys_resolver -a x86_64 "$num")
        grep -qx "$name" "$work/names" || echo "$name" >>"$work/new"
    done <"$work/nums"
    suppressed=$(sed -n 's/.*kauditd_printk_skb: \([0-9]*\) callbacks suppressed.*/\1/p' "$work/dmesg" | paste -sd+ | bc 2>/dev/null || echo 0)
    echo "round $round: $(wc -l <"$work/new") new name(s): $(sort -u "$work/new" | tr '\n' ' ') (records suppressed by the rate limit: ${suppressed:-0})"
    if [[ ! -s $work/new ]]; then
        # Nothing new, and the site's programs logged nothing at all: the list is complete
        # for this scenario. (Suppressed records may be other processes'.)
        break
    fi
    sort -u "$work/names" "$work/new" -o "$work/names"
    [[ $round -lt $max_rounds ]] || die "still finding new names after $max_rounds rounds"
done

{
    echo "# Syscalls of the WordPress site image (tini, sgrun-site-init and its tools, mariadbd,"
    echo "# mariadb-install-db, php-fpm8.2, nginx) run by sgrun, x86_64, one name a line."
    echo "# Measured 2026-11-26 with tests/wordpress/measure-syscalls.sh: tests/wordpress/run.sh"
    echo "# (first start creating the database, the whole WordPress flow of flow.sh, clean stop,"
    echo "# warm start, clean stop) under a seccomp profile with defaultAction SCMP_ACT_LOG,"
    echo "# names taken from the kernel's type=1326 audit records (dmesg), in $round rounds that"
    echo "# each allowed the names found before, until a round logged nothing new."
    echo "# Includes what runs after sgrun installs the filter (the execve of tini onwards)."
    echo "# Rare paths (errors, mail, plugin installs, load) may use more: see shared/data/README.md."
    sort -u "$work/names"
} >"$out"
echo "wrote $(grep -vc '^#' "$out") names to $out"
