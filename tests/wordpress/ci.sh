#!/bin/bash
# The WordPress site under its profile, as CI runs it (make test-wordpress):
#
#   1. the whole flow of run.sh under io.sgrun.profile=wordpress with every denial logged;
#      each denied call must be one of expected-denials.txt (a design decision with a reason)
#   2. the same as a tenant: the image from sgrun's store (`sgrun image build`), idmapped into
#      the tenant's range under an overlay on its loop volume, the data on that volume
#   3. the check's weakened twin: a local profile that also denies madvise, which the stack
#      uses all the time; the check must name madvise, or it could never catch a call the
#      wordpress class forgot
#
# Denials are read from the audit multicast group (seccomp-denials.py), not dmesg, whose rate
# limit hides all but the first ten of a run.
#
# Usage: tests/wordpress/ci.sh      (as root; SGRUN=/path/to/sgrun, default target/release)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
SGRUN=${SGRUN:-$repo/target/x86_64-unknown-linux-gnu/release/sgrun}
[[ -x $SGRUN ]] || { echo "wordpress ci: no sgrun binary at $SGRUN: run make build" >&2; exit 1; }
export SGRUN
[[ $(id -u) -eq 0 ]] || { echo "wordpress ci: must run as root" >&2; exit 1; }

work=$(mktemp -d /var/tmp/sgrun-wp-ci.XXXXXX)
chmod 0755 "$work"
listener=''
trap '[[ -n $listener ]] && kill "$listener" 2>/dev/null; rm -rf "$work"' EXIT
passed=0 failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
t_start=$SECONDS

# The expected names, comments and reasons stripped.
expected=$(sed -e 's/#.*//' -e 's/[[:space:]].*//' "$here/expected-denials.txt" | grep -v '^$' | sort -u)

# with_denials LOG -- command...: runs the command while recording seccomp audit records to
# LOG; returns the command's status.
with_denials() {
    local log=$1; shift 2
    rm -f "$work/ready"
    "$here/seccomp-denials.py" "$log" "$work/ready" &
    listener=$!
    for _ in $(seq 50); do [[ -e $work/ready ]] && break; sleep 0.1; done
    if [[ ! -e $work/ready ]]; then
        kill "$listener" 2>/dev/null; wait "$listener" 2>/dev/null; listener=''
        echo "the audit listener did not start" >"$log.err"
        return 99
    fi
    "$@"
    local rc=$?
    sleep 0.5 # records of the last processes are delivered asynchronously
    kill "$listener" 2>/dev/null
    wait "$listener" 2>/dev/null
    listener=''
    return $rc
}

# unexpected LOG: prints "name (count, by exe…)" for every denied call not in the expected list.
unexpected() {
    awk -v want="$expected" 'BEGIN { n = split(want, e, "\n"); for (i = 1; i <= n; i++) ok[e[i]] = 1 }
        !($1 in ok) { count[$1]++; if (!(($1 SUBSEP $3) in seen)) { seen[$1, $3] = 1; by[$1] = by[$1] " " $3 } }
        END { for (c in count) printf "%s (%d times, by%s)\n", c, count[c], by[c] }' "$1" | sort
}

# site NAME ENV... : one run.sh under the wordpress class, then the denial check.
site() {
    local name=$1; shift
    local log=$work/$name.denials
    if with_denials "$log" -- env "$@" ANNOTATIONS="io.sgrun.profile=wordpress,io.sgrun.profile.log-denials=true" \
        "$here/run.sh" >"$work/$name.log" 2>&1; then
        ok "$name: the whole WordPress flow under the wordpress class ($(grep '^# figures' "$work/$name.log" | sed 's/^# figures: //'))"
    else
        notok "$name: run.sh failed under the wordpress class"
        sed 's/^/#   /' "$work/$name.log" | tail -n 40
    fi
    local bad
    bad=$(unexpected "$log")
    if [[ -z $bad ]]; then
        ok "$name: no denial beyond expected-denials.txt ($(wc -l <"$log") records: $(awk '{print $1}' "$log" | sort | uniq -c | awk '{printf "%s %s×, ", $2, $1}' | sed 's/, $//'))"
    else
        notok "$name: calls the stack needs were denied:"
        sed 's/^/#   /' <<<"$bad"
    fi
}

echo "# wordpress ci: sgrun $SGRUN"
site plain
site tenant TENANT=wp-ci-$$

# The weakened twin: a wordpress class that also denies madvise.
mkdir -p "$work/profiles"
cat >"$work/profiles/wordpress-no-madvise.toml" <<'EOF'
[profile]
name = "wordpress-no-madvise"
kind = "class"
extends = ["wordpress"]
description = "the wordpress class missing a call the stack needs (test of the denial check)"

[[deny]]
names = ["madvise"]
why = "deliberately wrong: the denial check must catch it"
EOF
with_denials "$work/twin.denials" -- env SGRUN_PROFILES_DIR="$work/profiles" START_TIMEOUT=30 \
    ANNOTATIONS="io.sgrun.profile=wordpress-no-madvise,io.sgrun.profile.log-denials=true" \
    "$here/run.sh" >"$work/twin.log" 2>&1
twin_rc=$?
bad=$(unexpected "$work/twin.denials")
if grep -q '^madvise ' <<<"$bad"; then
    ok "weakened twin: the check names the call a broken class denies: $(grep '^madvise ' <<<"$bad") (run.sh exit $twin_rc)"
else
    notok "weakened twin: a class denying madvise went unnoticed (run.sh exit $twin_rc; unexpected: ${bad:-none})"
    sed 's/^/#   /' "$work/twin.log" | tail -n 20
fi

echo "1..$((passed + failed))"
echo "# $passed passed, $failed failed in $((SECONDS - t_start)) s"
[[ $failed -eq 0 ]]
