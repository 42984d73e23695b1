#!/bin/bash
# The cost of a profile's seccomp filter, as a ratio against no filter in the same run:
# a syscall-heavy loop (busybox dd, 1-byte reads and writes: two system calls per byte) in a
# container under each class, and under --default-profile none without seccomp. Also prints
# each class's BPF instruction count and the time to resolve and compile a profile.
# Usage: tests/bench/profiles.sh [--rounds N] [--bytes N]      (needs SGRUN=path, root)
set -euo pipefail
ROUNDS=5
BYTES=1000000
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --bytes) BYTES=$2; shift 2 ;;
        *) echo "usage: $0 [--rounds N] [--bytes N]" >&2; exit 2 ;;
    esac
done
SGRUN=${SGRUN:?set SGRUN to the sgrun binary}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/sgrun-bench-profiles.XXXXXX)
root=$work/root
trap 'for id in $("$SGRUN" --root "$root" list -q 2>/dev/null); do "$SGRUN" --root "$root" delete -f "$id" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
"$here/../rootfs/busybox.sh" "$work" >/dev/null

# Rows besides the classes, all under --default-profile none with a seccomp section of the
# config's own: "minimal" allows everything but acct (the price of having any filter at all:
# the slow syscall entry path, and the kernel's speculative-store-bypass mitigation that it
# switches on for seccomp tasks by default where the CPU offers it; see
# /sys/devices/system/cpu/vulnerabilities/spec_store_bypass); "minimal-spec-allow" is the same
# filter with SECCOMP_FILTER_FLAG_SPEC_ALLOW (without that mitigation), which sgrun never sets
# itself.
minimal='{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
  "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]}'
bundle() { # NAME CLASS|none|minimal|minimal-spec-allow
    local dir=$work/$1
    mkdir -p "$dir"
    "$SGRUN" spec --bundle "$dir"
    jq --arg rootfs "$work/rootfs" --arg class "$2" --argjson bytes "$BYTES" '
        .root = {path: $rootfs, readonly: true}
        | .process.terminal = false
        | .process.args = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", ("count=" + ($bytes|tostring))]
        | del(.linux.seccomp)
        | .linux.cgroupsPath = ("/sgrun-bench/" + $class)
        | if $class == "none" then .
          elif $class == "minimal" then .linux.seccomp = $minimal
          elif $class == "minimal-spec-allow" then .linux.seccomp = ($minimal + {flags: ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]})
          else .annotations = {"io.sgrun.profile": $class} end
    ' --argjson minimal "$minimal" "$dir/config.json" > "$dir/config.json.new"
    mv "$dir/config.json.new" "$dir/config.json"
}

run_once() { # NAME CLASS -> microseconds of the whole run
    local start end profile=()
    case $2 in none|minimal*) profile=(--default-profile none) ;; esac
    start=$(date +%s%N)
    "$SGRUN" --root "$root" "${profile[@]}" run --bundle "$work/$1" "bench-$1" >/dev/null 2>&1
    end=$(date +%s%N)
    echo $(( (end - start) / 1000 ))
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

classes=(none minimal minimal-spec-allow strict nginx php-fpm mariadb wordpress oci-default)
for c in "${classes[@]}"; do bundle "$c" "$c"; done
declare -A result
for ((r = 0; r < ROUNDS; r++)); do
    # Interleaved, so that drift on a busy machine hits every class alike.
    for c in "${classes[@]}"; do
        result[$c]+="$(run_once "$c" "$c") "
    done
done
base=$(tr ' ' '\n' <<<"${result[none]}" | grep . | median)
echo "| profile | BPF instructions | dd ${BYTES} x 1 byte (median of $ROUNDS) | ratio to no filter |"
echo "|---|---:|---:|---:|"
for c in "${classes[@]}"; do
    m=$(tr ' ' '\n' <<<"${result[$c]}" | grep . | median)
    if [ "$c" = none ]; then
        insns="-"
    elif [ "${c#minimal}" != "$c" ]; then
        insns="1 rule"
    else
        insns=$("$SGRUN" profile compile --json "$c" | jq .instructions)
    fi
    printf '| %s | %s | %d.%03d s | %s |\n' "$c" "$insns" $((m / 1000000)) $(((m / 1000) % 1000)) \
        "$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.3f", a / b}')"
done
start=$(date +%s%N)
for _ in $(seq 50); do "$SGRUN" profile compile wordpress >/dev/null; done
end=$(date +%s%N)
echo
echo "sgrun profile compile wordpress (resolve 7 files + compile, whole process): $(( (end - start) / 50000 )) us per run"
