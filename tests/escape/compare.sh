#!/bin/bash
# The escape suite for sgrun, runc and crun, each with --config default and --config tenant:
# one Markdown table of every vector (✓ defended, ✗ open) and the pass counts.
#
#   tests/escape/compare.sh [--out FILE] [--weakened]    e.g. --out docs/escape-results.md
#
# --weakened also runs tests/escape/weakened.sh (sgrun) and puts its checks into the page.
# --out writes a whole Markdown page (date, what the configs are, the table, what was open);
# the table alone goes to stdout either way. Environment: SGRUN (default
# <repo>/target/x86_64-unknown-linux-gnu/release/sgrun), RUNC (default runc on PATH), CRUN
# (default crun on PATH), ESCAPE_PROBE as for run.sh.
# Exit status: 0 when all six runs produced a full report and cleaned up (open vectors are
# results, not errors), 1 otherwise, 2 usage error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=
WEAKENED=0
die() { echo "compare: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        --out) [ $# -ge 2 ] || die "--out needs a file"; OUT=$2; shift 2 ;;
        --weakened) WEAKENED=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (only --out FILE)" ;;
    esac
done
if [ -n "$OUT" ]; then
    OUT=$(realpath -m -- "$OUT")
    [ -d "$(dirname "$OUT")" ] || die "--out: directory $(dirname "$OUT") does not exist"
fi

declare -A BIN=(
    [sgrun]=${SGRUN:-$REPO/target/x86_64-unknown-linux-gnu/release/sgrun}
    [runc]=${RUNC:-$(command -v runc || echo /usr/sbin/runc)}
    [crun]=${CRUN:-$(command -v crun || echo /usr/bin/crun)}
)
RTS=(sgrun runc crun)
CFGS=(default tenant)
for rt in "${RTS[@]}"; do
    [ -x "${BIN[$rt]}" ] || die "$rt binary ${BIN[$rt]} is not executable (make build for sgrun; apt-get install -y runc crun; or set ${rt^^}=PATH)"
done

ESCAPE_PROBE=$("$HERE/run.sh" --print-probe) || die "could not build the probe"
export ESCAPE_PROBE

T=$(mktemp -d /tmp/sgrun-escape-compare.XXXXXX)
trap 'rm -rf -- "$T"' EXIT

declare -A R=() MSG=() PASS=() FAIL=() SECS=() STATUS=()
VECTORS=()
declare -A SEEN=()
RC=0
for rt in "${RTS[@]}"; do
    for cfg in "${CFGS[@]}"; do
        col=$rt/$cfg rc=0 t0=${EPOCHREALTIME/./}
        echo "compare: $rt --config $cfg ..." >&2
        "$HERE/run.sh" --runtime "${BIN[$rt]}" --config "$cfg" > "$T/$rt-$cfg.tap" 2> "$T/$rt-$cfg.err" || rc=$?
        t1=$(( ${EPOCHREALTIME/./} - t0 ))           # microseconds; shown as seconds, 1 decimal
        SECS[$col]=$(( t1 / 1000000 )).$(( t1 % 1000000 / 100000 ))
        STATUS[$col]=$rc
        while IFS= read -r line; do
            if [[ $line =~ ^(not\ )?ok\ [0-9]+\ -\ ([a-z0-9-]+):\ ?(.*)$ ]]; then
                v=${BASH_REMATCH[2]}
                if [ -z "${SEEN[$v]:-}" ]; then SEEN[$v]=1; VECTORS+=("$v"); fi
                if [ -n "${BASH_REMATCH[1]}" ]; then R[$col/$v]=fail; MSG[$col/$v]=${BASH_REMATCH[3]}
                else R[$col/$v]=ok; fi
            elif [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
                PASS[$col]=${BASH_REMATCH[1]} FAIL[$col]=${BASH_REMATCH[2]}
            fi
        done < "$T/$rt-$cfg.tap"
        if [ -z "${PASS[$col]:-}" ] || { [ "$rc" != 0 ] && [ "$rc" != 1 ]; }; then
            echo "compare: $rt --config $cfg did not give a full report (exit $rc):" >&2
            tail -n 15 "$T/$rt-$cfg.err" | sed 's/^/    | /' >&2
            RC=1
        fi
    done
done

table() {
    local rt cfg v row
    row="| vector |"
    for rt in "${RTS[@]}"; do for cfg in "${CFGS[@]}"; do row+=" $rt $cfg |"; done; done
    echo "$row"
    row="|---|"
    for rt in "${RTS[@]}"; do for cfg in "${CFGS[@]}"; do row+=":-:|"; done; done
    echo "$row"
    for v in "${VECTORS[@]}"; do
        row="| $v |"
        for rt in "${RTS[@]}"; do for cfg in "${CFGS[@]}"; do
            case ${R[$rt/$cfg/$v]:-} in
                ok) row+=" ✓ |" ;;
                fail) row+=" ✗ |" ;;
                *) row+=" – |" ;;
            esac
        done; done
        echo "$row"
    done
    row="| **defended / total** |"
    for rt in "${RTS[@]}"; do for cfg in "${CFGS[@]}"; do
        if [ -n "${PASS[$rt/$cfg]:-}" ]; then
            row+=" **${PASS[$rt/$cfg]}/$(( PASS[$rt/$cfg] + FAIL[$rt/$cfg] ))** |"
        else row+=" no report (exit ${STATUS[$rt/$cfg]}) |"; fi
    done; done
    echo "$row"
    row="| seconds per run (rootfs and bundles, start, probe, cleanup) |"
    for rt in "${RTS[@]}"; do for cfg in "${CFGS[@]}"; do row+=" ${SECS[$rt/$cfg]} |"; done; done
    echo "$row"
}
open_list() {
    local rt cfg v
    for rt in "${RTS[@]}"; do for cfg in "${CFGS[@]}"; do
        for v in "${VECTORS[@]}"; do
            [ "${R[$rt/$cfg/$v]:-}" = fail ] || continue
            local m=${MSG[$rt/$cfg/$v]}
            # the probe's own words, shortened: the full text is in a run.sh run
            [ ${#m} -le 300 ] || m="${m:0:300} …"
            echo "* $rt $cfg, \`$v\`: $m"
        done
    done; done
}

cg_layout() {
    if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then echo "cgroup v2"
    elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
        echo "hybrid cgroups (v1 controllers; crun ran in a private mount namespace with /sys/fs/cgroup/unified hidden, which crun 1.8.1 needs)"
    else echo "cgroup v1"; fi
}

WEAK_TEXT=
if [ "$WEAKENED" = 1 ]; then
    echo "compare: tests/escape/weakened.sh ..." >&2
    wrc=0
    SGRUN=${BIN[sgrun]} "$HERE/weakened.sh" > "$T/weakened.tap" 2> "$T/weakened.err" || wrc=$?
    # the check lines and the summary; the per-run detail stays in a direct run
    WEAK_TEXT=$(grep -E '^(ok|not ok) |^[0-9]+ passed' "$T/weakened.tap" | sed 's/^/    /')
    [ "$wrc" = 0 ] || { echo "compare: weakened.sh failed (exit $wrc)" >&2; RC=1; }
fi

table
if [ -n "$OUT" ]; then
    {
        cat <<EOF
# Escape test results

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -sr), $(cg_layout),
by \`tests/escape/compare.sh --out docs/escape-results.md$( [ "$WEAKENED" = 1 ] && echo " --weakened")\`. Runtimes:
$(for rt in "${RTS[@]}"; do echo "* $rt: \`${BIN[$rt]}\`, $("${BIN[$rt]}" --version 2>/dev/null | head -n1)"; done)

Each column is one run of \`tests/escape/run.sh --runtime … --config …\`: a peer container
(the other tenant) and a probe container (the attacker), both from the same busybox bundle
template, which mirrors \`runc spec\`. ✓ = the probe could not do it, ✗ = it could.
What each vector tries is in [escape-catalogue.md](escape-catalogue.md).

* **default**: the template as \`runc spec\` writes it (pid, ipc, uts, mount and network
  namespaces; runc's three default capabilities; no user namespace; no seccomp section)
  plus a 256 MiB memory and 128 pids limit. For **sgrun** "no seccomp section" still means its
  built-in default profile \`oci-default\` (Docker's default, tightened); runc and crun run with
  no seccomp filter at all. That difference is deliberate and is what this column compares.
* **tenant**: what a hosting tenant gets: user and cgroup namespaces, the same limits, a
  read-only root with a tmpfs /tmp. **runc and crun**: probe 0→200000, peer 0→300000, 65536
  ids each, the bundle's rootfs copies chowned to them (a bind of a host directory as root),
  and (they have no profiles) Docker's default seccomp profile as \`linux.seccomp\`.
  **sgrun**: real tenants (\`sgrun tenant create\`, loop volumes of 64 MiB and 4096 inodes,
  each tenant's own id range mapped by sgrun) running images from its store (the same busybox
  trees, imported with \`sgrun image import\`; the peer's holds the canary) on the tenant's
  idmapped overlay, with the site's data from the tenant's volume at /srv/site (annotations
  \`io.sgrun.tenant\`, \`io.sgrun.image\`, \`io.sgrun.site\`), and the annotation
  \`io.sgrun.profile=wordpress\`. The peer (the victim) runs under Docker's default filter
  with all three (sgrun: \`oci-default\`), because the wordpress class denies \`shmget\` and
  the peer must be able to create the SysV segment the probe attacks.

$(table)

## What was open

$(open_list | grep . || echo "Nothing: every vector was defended in every run.")

Known gaps of sgrun's tenant config, with reasons: [tests/escape/known-gaps.txt](../tests/escape/known-gaps.txt).
$( # shellcheck disable=SC2016  # the backquotes are Markdown
   [ -n "$WEAK_TEXT" ] && printf '\n## Can the suite fail? (`make test-escape`)\n\nsgrun, tenant config, then each weakening of it (see tests/escape/README.md):\n\n%s\n' "$WEAK_TEXT")
EOF
    } > "$OUT"
    echo "compare: wrote $OUT" >&2
fi
exit "$RC"
