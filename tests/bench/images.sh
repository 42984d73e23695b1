#!/bin/bash
# Image figures: `sgrun image build` of the WordPress recipe (time, size, entries), the
# "up to date" answer, `verify`, and `sgrun image import` of a large docker-archive (the
# WordPress tree as one layer), fresh and into a store that already has it.
#
#   tests/bench/images.sh [--rounds N] [--no-build STATE_DIR] [--keep]
#
# --rounds N     imports timed (fresh store each; the median is printed), default 3
# --no-build DIR use the wordpress image already in DIR's store instead of building one
#                (the build row then says "not run")
# --keep         keep the work directory (/var/tmp/sgrun-bench-images)
# SGRUN          the binary (default <repo>/target/x86_64-unknown-linux-gnu/release/sgrun)
#
# Needs root, jq, GNU tar, and for the build the Debian mirror (about a minute). Prints a
# Markdown table on stdout; progress on stderr. Run it on a quiet machine: the build and the
# hashing are CPU-bound.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
SGRUN=${SGRUN:-$repo/target/x86_64-unknown-linux-gnu/release/sgrun}
rounds=3
reuse=
keep=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --rounds) rounds=${2:?}; shift 2 ;;
        --no-build) reuse=${2:?}; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "images.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
die() { echo "images.sh: $*" >&2; exit 2; }
[[ -x $SGRUN ]] || die "no sgrun binary at $SGRUN (make build, or set SGRUN)"
[[ $(id -u) -eq 0 ]] || die "must run as root"
command -v jq >/dev/null || die "jq is missing (apt-get install jq)"
work=/var/tmp/sgrun-bench-images
cleanup() { [[ $keep -eq 1 ]] || rm -rf "$work"; }
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"
log() { echo "images.sh: $*" >&2; }
now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if [[ -n $reuse ]]; then
    state=$reuse
    build_row="| build (mmdebstrap + post-install + hash + commit) | not run (--no-build) | |"
else
    state=$work/build-state
    log "building images/wordpress (about a minute)"
    t0=$(now)
    "$SGRUN" --state-dir "$state" image build --rebuild --quiet --json "$repo/images/wordpress" >"$work/build.json"
    t1=$(now)
    build_row="| build (mmdebstrap + post-install + hash + commit) | $(printf %.1f "$(secs "$t0" "$t1")") s | $(jq -r .image.meta.files "$work/build.json") entries |"
fi
img=$("$SGRUN" --state-dir "$state" image inspect wordpress)
root=$(jq -r .rootfs <<<"$img")
t0=$(now); "$SGRUN" --state-dir "$state" image build "$repo/images/wordpress" >/dev/null; t1=$(now)
uptodate=$(secs "$t0" "$t1")
t0=$(now); "$SGRUN" --state-dir "$state" image verify wordpress >/dev/null; t1=$(now)
verify=$(secs "$t0" "$t1")

# A docker-archive of the tree: one uncompressed layer. /dev's nodes (mmdebstrap makes
# them) are left out: imports refuse device nodes.
log "making a docker-archive of the tree"
da=$work/da
mkdir -p "$da/layer"
tar -C "$root" --numeric-owner --xattrs --xattrs-include='security.capability' --exclude='./dev/*' -cf "$da/layer/layer.tar" .
diff_id=$(sha256sum "$da/layer/layer.tar" | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/usr/local/sbin/sgrun-site-init"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff_id" >"$da/config.json"
cfg=$(sha256sum "$da/config.json" | cut -d' ' -f1)
mv "$da/config.json" "$da/$cfg.json"
printf '[{"Config":"%s.json","RepoTags":["wordpress-import:bench"],"Layers":["layer/layer.tar"]}]' "$cfg" >"$da/manifest.json"
tar -C "$da" -cf "$work/wordpress.tar" "$cfg.json" manifest.json layer/layer.tar
rm -rf "$da"
archive_mib=$(( $(stat -c %s "$work/wordpress.tar") >> 20 ))

times=()
for ((i = 1; i <= rounds; i++)); do
    s=$work/import-state-$i
    sync
    t0=$(now)
    "$SGRUN" --state-dir "$s" image import --trusted --quiet --json "$work/wordpress.tar" >"$work/import.json"
    t1=$(now)
    times+=("$(secs "$t0" "$t1")")
    log "import $i/$rounds: ${times[-1]} s"
    [[ $i -lt $rounds ]] && rm -rf "$s"
done
import_med=$(printf '%s\n' "${times[@]}" | median)
t0=$(now)
"$SGRUN" --state-dir "$work/import-state-$rounds" image import --trusted --quiet --name again "$work/wordpress.tar" >/dev/null
t1=$(now)
again=$(secs "$t0" "$t1")

cat <<TABLE
| images ($(date -u '+%Y-%m-%d %H:%M UTC'), git $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo ?)) | time | size |
|---|---|---|
$build_row
| WordPress image on disk | | $(( $(jq -r .disk_usage <<<"$img") >> 20 )) MiB ($(( $(jq -r .size <<<"$img") >> 20 )) MiB content, $(jq -r .files <<<"$img") entries) |
| build again, "up to date" | $(printf %.3f "$uptodate") s | |
| verify (re-hash the tree) | $(printf %.2f "$verify") s | |
| import docker-archive, fresh store (median of $rounds; min–max) | $(printf %.2f "$import_med") s ($(printf '%s\n' "${times[@]}" | sort -n | head -1)–$(printf '%s\n' "${times[@]}" | sort -n | tail -1)) | ${archive_mib} MiB archive, $(jq -r .stats.entries "$work/import.json") entries |
| import the same archive again (content already stored) | $(printf %.2f "$again") s | |
TABLE
