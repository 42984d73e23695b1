#!/bin/bash
# Write an OCI bundle (config.json) that runs the WordPress site image with sgrun, and prepare
# the site's host directories with the owners the image needs.
#
# Usage: tests/wordpress/bundle.sh IMAGE_ROOTFS DATA_DIR SOCKET_DIR BUNDLE_DIR [JQ_FILTER]
#   IMAGE_ROOTFS  the rootfs made by build-image.sh (used read-only, shared by sites)
#   DATA_DIR      the tenant's data directory -> /srv/site (rw): mysql/ and wp-content/
#   SOCKET_DIR    host directory -> /run/sgrun-http; nginx listens on http.sock in it
#   BUNDLE_DIR    where config.json is written (created if missing)
#   JQ_FILTER     optional jq filter applied last to config.json (same as EXTRA_JQ)
#
# Environment (all optional):
#   SGRUN          sgrun binary (for `sgrun spec`)         default: sgrun on PATH
#   SITE_ID        container id, also the cgroup /sgrun/<id> default: basename of BUNDLE_DIR
#   SITE_HOSTNAME  the container's hostname               default: wordpress
#   MEMORY_LIMIT   bytes, 0 for none                      default: 536870912 (512 MiB)
#   PIDS_LIMIT     0 for none                             default: 512
#   ANNOTATIONS    "key=value" pairs, one per line or comma-separated, e.g.
#                  ANNOTATIONS=io.sgrun.profile=wordpress
#   EXTRA_JQ       a jq filter applied last (after JQ_FILTER)
#   TENANT         a tenant (`sgrun tenant create`): the container runs on the image IMAGE_NAME
#                  from sgrun's store, idmapped into the tenant's range under an overlay on its
#                  volume (docs/rootfs.md), with DATA_DIR (the site's directory on the volume,
#                  <volume>/sites/<SITE_ID>) at /srv/site. sgrun maps the tenant's range itself:
#                  set USERNS_BASE to the tenant's first id for the directory owners only.
#   IMAGE_NAME     the image in sgrun's store (with TENANT)     default: wordpress
#   CAPS           capabilities, comma-separated           default: CAP_SETUID,CAP_SETGID,CAP_KILL
#   USERNS_BASE    host uid/gid that container id 0 maps to; with it the container gets a
#                  user namespace mapping 0..65535 to USERNS_BASE..USERNS_BASE+65535, and the
#                  host directories are owned by the mapped ids. The rootfs must then be
#                  owned by mapped ids too (see tests/wordpress/README.md).
#
# Host directory owners (container ids, shifted by USERNS_BASE when set); only the
# directories themselves are changed, never what is inside them, and never through symlinks:
#   DATA_DIR root 0755, DATA_DIR/mysql mysql:mysql 0700, DATA_DIR/wp-content 33:33 0755,
#   SOCKET_DIR root 0755.
set -euo pipefail

die() { echo "bundle: error: $*" >&2; exit 1; }

[[ $# -ge 4 && $# -le 5 ]] || die "usage: $0 IMAGE_ROOTFS DATA_DIR SOCKET_DIR BUNDLE_DIR [JQ_FILTER]"
rootfs=$1 data=$2 sockdir=$3 bundle=$4 jq_arg=${5:-}
sgrun=${SGRUN:-sgrun}
command -v jq >/dev/null || die "jq is missing: apt-get install jq"
command -v "$sgrun" >/dev/null || die "sgrun binary '$sgrun' not found: set SGRUN=/path/to/sgrun"
[[ -x $rootfs/usr/local/sbin/sgrun-site-init && -x $rootfs/usr/bin/tini ]] ||
    die "$rootfs is not a WordPress site rootfs (no sgrun-site-init or tini): build it with tests/wordpress/build-image.sh"
rootfs=$(cd "$rootfs" && pwd)

site_id=${SITE_ID:-$(basename "$bundle")}
[[ $site_id =~ ^[A-Za-z0-9][A-Za-z0-9_+.-]{0,127}$ ]] ||
    die "container id '$site_id' is not valid (letters, digits and _ + - ., at most 128): set SITE_ID"
hostname=${SITE_HOSTNAME:-wordpress}
memory=${MEMORY_LIMIT:-536870912}
pids=${PIDS_LIMIT:-512}
[[ $memory =~ ^[0-9]+$ && $pids =~ ^[0-9]+$ ]] || die "MEMORY_LIMIT and PIDS_LIMIT must be numbers (0 for no limit)"
caps=${CAPS-CAP_SETUID,CAP_SETGID,CAP_KILL}
base=${USERNS_BASE:-}
[[ -z $base || $base =~ ^[1-9][0-9]*$ ]] || die "USERNS_BASE must be a positive number (a host uid)"

# The image's mysql ids: Debian allocates them at install time, so read them from the image.
mysql_uid=$(awk -F: '$1 == "mysql" { print $3 }' "$rootfs/etc/passwd")
mysql_gid=$(awk -F: '$1 == "mysql" { print $3 }' "$rootfs/etc/group")
[[ -n $mysql_uid && -n $mysql_gid ]] || die "no mysql user or group in $rootfs/etc/passwd, /etc/group"
www_id=33
shift_id() { echo $((${base:-0} + $1)); }

# --- host directories ------------------------------------------------------------------------
# mkdir + chown of the directory itself only (-h: a planted symlink is never followed; a
# symlink where a directory is expected is refused).
prepare_dir() { # PATH UID GID MODE
    local path=$1
    if [[ -L $path ]]; then die "$path is a symlink: refusing to use it as a site directory"; fi
    mkdir -p "$path" || die "cannot create $path"
    chown -h "$(shift_id "$2"):$(shift_id "$3")" "$path" || die "cannot chown $path"
    chmod "$4" "$path" || die "cannot chmod $path"
}
prepare_dir "$data" 0 0 0755
data=$(cd "$data" && pwd)
prepare_dir "$data/mysql" "$mysql_uid" "$mysql_gid" 0700
prepare_dir "$data/wp-content" "$www_id" "$www_id" 0755
prepare_dir "$sockdir" 0 0 0755
sockdir=$(cd "$sockdir" && pwd)
mkdir -p "$bundle" || die "cannot create the bundle directory $bundle"

# --- config.json -----------------------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$sgrun" spec -b "$tmp" || die "'$sgrun spec' failed"

annotations='{}'
if [[ -n ${ANNOTATIONS:-} ]]; then
    while IFS= read -r kv; do
        [[ -z $kv ]] && continue
        [[ $kv == *=* ]] || die "annotation '$kv' is not key=value"
        annotations=$(jq -c --arg k "${kv%%=*}" --arg v "${kv#*=}" '. + {($k): $v}' <<<"$annotations")
    done < <(tr ',' '\n' <<<"$ANNOTATIONS")
fi

jq \
    --arg rootfs "$rootfs" --arg data "$data" --arg sockdir "$sockdir" \
    --arg hostname "$hostname" --arg cgroup "/sgrun/$site_id" \
    --argjson mysql_uid "$mysql_uid" --argjson mysql_gid "$mysql_gid" --argjson www "$www_id" \
    --argjson memory "$memory" --argjson pids "$pids" \
    --arg caps "$caps" --arg base "$base" --argjson annotations "$annotations" \
    --arg tenant "${TENANT:-}" --arg image "${IMAGE_NAME:-wordpress}" --arg site "$site_id" '
    def tmpfs($dst; $opts): {destination: $dst, type: "tmpfs", source: "tmpfs",
        options: (["nosuid", "nodev"] + $opts)};
    ($caps | split(",") | map(select(. != ""))) as $caplist
    | .root = {path: $rootfs, readonly: true}
    | .hostname = $hostname
    | .process.terminal = false
    | .process.cwd = "/"
    | .process.user = {uid: 0, gid: 0}
    | .process.args = ["/usr/bin/tini", "-g", "--", "/usr/local/sbin/sgrun-site-init"]
    | .process.env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                      "LANG=C.UTF-8"]
    # Root in the container, three capabilities (measured: tests/wordpress/README.md).
    # No ambient set: the init is uid 0, and execve keeps a root process bounding set.
    | .process.capabilities = {bounding: $caplist, effective: $caplist,
                               permitted: $caplist, inheritable: [], ambient: []}
    | .process.noNewPrivileges = true
    | .process.rlimits = [{type: "RLIMIT_NOFILE", hard: 4096, soft: 4096}]
    # Everything but these is read-only (the root is).
    | .mounts += [
        tmpfs("/tmp"; ["mode=1777", "size=128m"]),
        tmpfs("/run"; ["noexec", "mode=755", "size=16m"]),
        # after /run: mounted on top of it
        tmpfs("/run/mysqld"; ["noexec", "mode=755", "size=1m",
              "uid=\($mysql_uid)", "gid=\($mysql_gid)"]),
        {destination: "/run/sgrun-http", type: "bind", source: $sockdir,
         options: ["bind", "rw", "nosuid", "nodev", "noexec"]},
        tmpfs("/var/log"; ["noexec", "mode=755", "size=16m"]),
        # nginx request-body buffers: up to client_max_body_size. Mode 755, not 700: the
        # nginx master (root without CAP_DAC_OVERRIDE) must search it to find its temp dirs.
        tmpfs("/var/lib/nginx"; ["noexec", "mode=755", "size=128m",
              "uid=\($www)", "gid=\($www)"]),
        tmpfs("/var/lib/php/sessions"; ["noexec", "mode=1733", "size=16m"]),
        {destination: "/srv/site", type: "bind", source: $data,
         options: ["bind", "rw", "nosuid", "nodev", "noexec"]}
      ]
    | .linux.cgroupsPath = $cgroup
    | .linux.resources = ((.linux.resources // {})
        + (if $memory > 0 then {memory: {limit: $memory}} else {} end)
        + (if $pids > 0 then {pids: {limit: $pids}} else {} end))
    | if $tenant != "" then
        # sgrun makes the root (image + overlay), /srv/site and the user namespace itself
        .mounts |= map(select(.destination != "/srv/site"))
        | .annotations = ((.annotations // {}) + {"io.sgrun.tenant": $tenant,
            "io.sgrun.image": $image, "io.sgrun.site": $site})
      elif $base != "" then
        .linux.namespaces += [{type: "user"}]
        | .linux.uidMappings = [{containerID: 0, hostID: ($base | tonumber), size: 65536}]
        | .linux.gidMappings = [{containerID: 0, hostID: ($base | tonumber), size: 65536}]
      else . end
    | if ($annotations | length) > 0 then .annotations = ((.annotations // {}) + $annotations)
      else . end
    ' "$tmp/config.json" >"$tmp/config.1.json" || die "jq failed building config.json"

for filter in "$jq_arg" "${EXTRA_JQ:-}"; do
    [[ -z $filter ]] && continue
    jq "$filter" "$tmp/config.1.json" >"$tmp/config.2.json" || die "the extra jq filter failed: $filter"
    mv "$tmp/config.2.json" "$tmp/config.1.json"
done
mv "$tmp/config.1.json" "$bundle/config.json"
echo "bundle: wrote $bundle/config.json (id $site_id, cgroup /sgrun/$site_id)" >&2
