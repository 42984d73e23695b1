#!/bin/bash
# exec latency: `sgrun exec`, `runc exec` and `crun exec` of /bin/true into a running
# `sleep` container of each runtime (the same bundle), in alternating rounds, with the
# median, p90 and the ratio to crun. This is run.sh restricted to its exec op (same private
# mount namespace, in which a tmpfs hides the hybrid host's cgroup2 mount from crun 1.8.1,
# same settle pause before each timed step, same watchdog and cleanup).
#
#   tests/bench/exec.sh [--rounds N] [--out FILE] [any other run.sh option]
#
# Environment: SGRUN (default: the release binary), RUNC, CRUN as for run.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$HERE/run.sh" --ops exec --scale-rounds 0 --rounds 40 "$@"
