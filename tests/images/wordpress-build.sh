#!/bin/bash
# The real WordPress image build with `sgrun image build` (about a minute; needs root and the
# Debian mirror named in images/wordpress/recipe.toml). For the WordPress CI, beside
# tests/wordpress/build-image.sh, which stays the end-to-end tests' builder.
#
#   tests/images/wordpress-build.sh [--rebuild] [--compare ROOTFS] [STATE_DIR]
#
# STATE_DIR   sgrun --state-dir (default /var/tmp/sgrun-images-wordpress); kept, so a second
#             run answers "up to date" unless the recipe changed or --rebuild is given
# --compare   a rootfs made by tests/wordpress/build-image.sh: the two trees must have the same
#             paths, types, modes and owners; differing contents are listed (/etc/shadow holds
#             the build day, so it differs between days)
# SGRUN       the binary (default <repo>/target/debug/sgrun)
#
# Checks: the build succeeds and prints its phases; a second build is "up to date" in under
# 2 s; verify passes; the tree has what the site needs and lacks what the recipe removes.
# Exit 0 when every check passed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
SGRUN=${SGRUN:-$repo/target/debug/sgrun}
rebuild=()
compare=
state=/var/tmp/sgrun-images-wordpress
while [[ $# -gt 0 ]]; do
    case $1 in
        --rebuild) rebuild=(--rebuild); shift ;;
        --compare) compare=${2:?--compare needs a rootfs}; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) state=$1; shift ;;
    esac
done
fail() { echo "wordpress-build: FAIL: $*" >&2; exit 1; }
[[ -x $SGRUN ]] || fail "no sgrun binary at $SGRUN (cargo build -p sgrun, or set SGRUN)"
[[ $(id -u) -eq 0 ]] || fail "must run as root"
sg() { "$SGRUN" --state-dir "$state" "$@"; }

start=$EPOCHREALTIME
sg image build "${rebuild[@]}" "$repo/images/wordpress" || fail "sgrun image build failed (see above)"
secs() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
build_s=$(secs "$start")
start=$EPOCHREALTIME
out=$(sg image build "$repo/images/wordpress")
again_s=$(secs "$start")
[[ $out == *"up to date"* ]] || fail "a second build was not 'up to date': $out"
awk -v s="$again_s" 'BEGIN { exit !(s < 2) }' || fail "the up-to-date answer took ${again_s}s"
sg image verify wordpress || fail "verify found differences"

json=$(sg image inspect wordpress)
root=$(jq -r .rootfs <<<"$json")
[[ $(jq -r .source.kind <<<"$json") == recipe ]] || fail "source is not the recipe"
for p in usr/sbin/nginx usr/sbin/php-fpm8.2 usr/sbin/mariadbd usr/bin/tini usr/share/wordpress/wp-login.php \
         usr/local/sbin/sgrun-site-init etc/nginx/nginx.conf etc/wordpress/config-default.php; do
    [[ -e $root/$p ]] || fail "missing $p"
done
[[ -x $root/usr/local/sbin/sgrun-site-init ]] || fail "sgrun-site-init is not executable"
for d in srv/site var/lib/nginx var/lib/php/sessions; do
    [[ -d $root/$d ]] || fail "mount point $d missing"
done
for p in etc/nginx/sites-enabled/default etc/resolv.conf etc/hostname usr/share/man var/cache/apt var/lib/apt/lists; do
    [[ ! -e $root/$p && ! -L $root/$p ]] || fail "$p should have been removed"
done
[[ -z $(ls -A "$root/var/lib/mysql") ]] || fail "var/lib/mysql is not empty"
[[ -z $(find "$root/usr/share/doc" -type f ! -name copyright | head -1) ]] || fail "documentation left in usr/share/doc"
cmp -s "$repo/images/wordpress/files/etc/nginx/nginx.conf" "$root/etc/nginx/nginx.conf" || fail "files/ was not copied over"
[[ $(stat -c %a:%u:%g "$root") == 755:0:0 ]] || fail "root directory is not 0755 root:root"

if [[ -n $compare ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$SGRUN" image manifest "$compare" >"$tmp/script" 2>/dev/null || fail "cannot read $compare"
    cp "$state/images/sha256/$(jq -r .id <<<"$json")/manifest" "$tmp/rust"
    if ! diff <(cut -d' ' -f1-5 "$tmp/script") <(cut -d' ' -f1-5 "$tmp/rust") >"$tmp/meta.diff"; then
        head -40 "$tmp/meta.diff" >&2
        fail "the trees differ in paths, types, modes or owners (above: < script, > sgrun)"
    fi
    echo "wordpress-build: same paths, types, modes and owners as $compare; contents differ in:"
    { diff "$tmp/script" "$tmp/rust" || true; } | sed -n 's/^> \([^ ]*\) .*/  \1/p'
fi
echo "wordpress-build: ok: built in ${build_s}s, $(jq -r .disk_usage <<<"$json" | numfmt --to=iec-i)B on disk, $(jq -r .files <<<"$json") entries, id $(jq -r .id <<<"$json" | cut -c1-12)"
