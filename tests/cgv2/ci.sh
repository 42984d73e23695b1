#!/bin/bash
# CI entry for the cgroup-v2 tests (a Makefile target runs just this):
#   1. build sgrun as a static binary (the VM has no libc),
#   2. fetch the Debian cloud kernel (cached under build/cgv2),
#   3. run.sh: one QEMU TCG boot that runs every cgroup-v2 test,
# printing how long each phase took. Exit status: run.sh's (0 pass, 1 test failures, 2 setup
# error, 125 the VM gave no result), or cargo's when the build fails.
#
#   tests/cgv2/ci.sh
#
# Environment: SGRUN_CGV2_BINARY=PATH skips the build and tests that binary instead (e.g.
# /usr/sbin/runc, to check the VM path itself); CARGO_TARGET_DIR is honoured; every
# SGRUN_CGV2_* variable of run.sh / fetch-kernel.sh passes through.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
target=x86_64-unknown-linux-gnu

t0=$(now)
if [ -n "${SGRUN_CGV2_BINARY:-}" ]; then
    bin=$SGRUN_CGV2_BINARY
    echo "cgv2 ci: testing $bin (no build)" >&2
else
    # An explicit --target keeps +crt-static away from build scripts and proc macros, which must
    # stay dynamic host binaries.
    (cd "$repo" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
        cargo build --release -p sgrun --target "$target")
    bin=${CARGO_TARGET_DIR:-$repo/target}/$target/release/sgrun
    if ldd "$bin" 2>/dev/null | grep -q '=>'; then
        echo "cgv2 ci: error: $bin is dynamically linked although built with +crt-static" >&2
        exit 2
    fi
fi
t1=$(now)
"$here/fetch-kernel.sh" "${SGRUN_CGV2_DIR:-$repo/build/cgv2}"
t2=$(now)
set +e
"$here/run.sh" "$bin"
rc=$?
set -e
t3=$(now)
echo "cgv2 ci: build $(secs "$t0" "$t1")s, kernel fetch $(secs "$t1" "$t2")s, VM + tests $(secs "$t2" "$t3")s, total $(secs "$t0" "$t3")s; exit $rc" >&2
exit $rc
