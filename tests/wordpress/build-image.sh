#!/bin/bash
# Build the WordPress site rootfs from images/wordpress/recipe.toml with mmdebstrap.
#
# Usage: tests/wordpress/build-image.sh DEST [RECIPE_DIR]
#   DEST        output directory; the rootfs goes to DEST/rootfs, the stamp to DEST/stamp
#   RECIPE_DIR  default: images/wordpress next to this script's repository
#
# Idempotent: DEST/stamp holds a hash of the recipe, its files/ tree and this script; when
# it matches, nothing is rebuilt. A build goes to DEST/rootfs.new and replaces DEST/rootfs
# only when it is complete; a failed build removes its partial output.
# Needs root (mmdebstrap --mode=root), python3 >= 3.11 (tomllib) and network access to the
# Debian mirror named in the recipe. Installs mmdebstrap with apt-get when it is missing.
set -euo pipefail

die() { echo "build-image: error: $*" >&2; exit 1; }
log() { echo "build-image: $*" >&2; }

[[ $# -ge 1 && $# -le 2 ]] || die "usage: $0 DEST [RECIPE_DIR]"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest=$1
recipe_dir=${2:-$here/../../images/wordpress}
[[ -f $recipe_dir/recipe.toml ]] || die "no recipe.toml in $recipe_dir (pass the recipe directory as the second argument)"
recipe_dir=$(cd "$recipe_dir" && pwd)
[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap --mode=root keeps file ownership); rerun with sudo"
python3 -c 'import tomllib' 2>/dev/null || die "python3 with tomllib (3.11+) is needed to read recipe.toml"

# --- read the recipe -------------------------------------------------------------------
# One python call validates the recipe and prints shell-safe NUL-separated fields:
# the hash, then "key=value" lines for the scalar settings, then the mmdebstrap arguments.
recipe_py=$(cat <<'PY'
import hashlib, os, stat, sys, tomllib
recipe_dir, script = sys.argv[1], sys.argv[2]
path = os.path.join(recipe_dir, "recipe.toml")
with open(path, "rb") as f:
    try:
        r = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        sys.exit(f"{path}: {e}")
required = {"suite": str, "variant": str, "mirror": str, "packages": list}
optional = {"architecture": str, "components": list, "extra_suites": list,
            "security_mirror": str, "security_suite": str, "exclude_paths": list,
            "keep_paths": list, "purge": list, "remove_paths": list, "mount_points": list,
            "files": str, "name": str, "description": str}
for k, t in required.items():
    if not isinstance(r.get(k), t):
        sys.exit(f"{path}: key '{k}' is missing or not a {t.__name__}")
for k, v in r.items():
    t = required.get(k) or optional.get(k)
    if t is None:
        sys.exit(f"{path}: unknown key '{k}' (known: {', '.join(sorted({**required, **optional}))})")
    if not isinstance(v, t):
        sys.exit(f"{path}: key '{k}' must be a {t.__name__}")
    if t is list and not all(isinstance(x, str) and x and "\0" not in x for x in v):
        sys.exit(f"{path}: key '{k}' must be a list of non-empty strings")
for k in ("remove_paths", "mount_points"):
    for p in r.get(k, []):
        if p.startswith("/") or ".." in p.split("/"):
            sys.exit(f"{path}: {k} entry '{p}' must be relative to the rootfs, without '..'")

# Hash: recipe + every file of files/ (path, type, mode, content or link target) + script.
h = hashlib.sha256()
def add(tag, data):
    h.update(tag.encode() + b"\0" + data + b"\0")
add("recipe", open(path, "rb").read())
add("script", open(script, "rb").read())
files = os.path.join(recipe_dir, r.get("files", "files"))
if os.path.isdir(files):
    for root, dirs, names in os.walk(files):
        dirs.sort()
        for n in sorted(dirs + names):
            p = os.path.join(root, n)
            rel = os.path.relpath(p, files)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                add("link " + rel, os.readlink(p).encode())
            elif stat.S_ISDIR(st.st_mode):
                add(f"dir {rel} {st.st_mode & 0o7777:o}", b"")
            elif stat.S_ISREG(st.st_mode):
                add(f"file {rel} {st.st_mode & 0o7777:o}", open(p, "rb").read())
            else:
                sys.exit(f"{p}: only files, directories and symlinks may be in files/")
out = [h.hexdigest()]
out.append("files=" + (files if os.path.isdir(files) else ""))
out.append("suite=" + r["suite"])
out.append("--")
# mmdebstrap arguments
args = ["--mode=root", "--variant=" + r["variant"], "--format=directory"]
if "architecture" in r:
    args.append("--architectures=" + r["architecture"])
if "components" in r:
    args.append("--components=" + ",".join(r["components"]))
args.append("--include=" + ",".join(r["packages"]))
for p in r.get("exclude_paths", []):
    args.append("--dpkgopt=path-exclude=" + p)
for p in r.get("keep_paths", []):
    args.append("--dpkgopt=path-include=" + p)
# no Recommends, no Suggests: the list above is the whole image
args += ["--aptopt=APT::Install-Recommends \"false\"", "--aptopt=APT::Install-Suggests \"false\""]
if r.get("purge"):
    args.append("--customize-hook=chroot \"$1\" dpkg --purge --force-remove-essential --force-depends "
                + " ".join(r["purge"]))
out += args
out.append("--")
comps = " ".join(r.get("components", ["main"]))
sources = [f"deb {r['mirror']} {s} {comps}" for s in [r["suite"]] + r.get("extra_suites", [])]
if "security_mirror" in r:
    sources.append(f"deb {r['security_mirror']} {r.get('security_suite', r['suite'] + '-security')} {comps}")
out.append("\n".join(sources))
out.append("--")
out += ["rm " + p for p in r.get("remove_paths", [])]
out += ["mkdir " + p for p in r.get("mount_points", [])]
sys.stdout.write("\0".join(out) + "\0")
PY
)
fields=()
mapfile -d '' fields < <(python3 -c "$recipe_py" "$recipe_dir" "${BASH_SOURCE[0]}") || true
[[ ${#fields[@]} -gt 4 ]] || die "could not read $recipe_dir/recipe.toml (see the message above)"

hash=${fields[0]}
files_dir=${fields[1]#files=}
suite=${fields[2]#suite=}
i=4
mm_args=()
while [[ ${fields[$i]} != -- ]]; do mm_args+=("${fields[$i]}"); i=$((i + 1)); done
i=$((i + 1))
sources=${fields[$i]}
i=$((i + 2))
post=("${fields[@]:$i}")

stamp=$dest/stamp
if [[ -f $stamp && -d $dest/rootfs && $(cat "$stamp") == "$hash" ]]; then
    log "up to date: $dest/rootfs (recipe hash ${hash:0:12})"
    exit 0
fi

if ! command -v mmdebstrap >/dev/null; then
    log "mmdebstrap is missing: installing it with apt-get"
    apt-get install -y -q mmdebstrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q mmdebstrap >/dev/null; } \
        || die "could not install mmdebstrap (apt-get install mmdebstrap)"
fi

# --- build ------------------------------------------------------------------------------
mkdir -p "$dest"
new=$dest/rootfs.new
cleanup() {
    local rc=$?
    if [[ $rc -ne 0 && -e $new ]]; then
        # Never follow a mount that a failed build may have left behind (/proc, /dev...).
        if findmnt -rn -o TARGET | grep -q "^$new/"; then
            log "build failed and left mounts under $new: unmount them (findmnt | grep $new), then rm -rf $new"
        else
            rm -rf --one-file-system "$new"
            log "build failed: removed the partial rootfs $new"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
if [[ -e $new ]]; then
    findmnt -rn -o TARGET | grep -q "^$new/" && die "$new has mounts under it: unmount them first"
    rm -rf --one-file-system "$new"
fi

start=$SECONDS
log "building $dest/rootfs from $recipe_dir (suite $suite, recipe hash ${hash:0:12})"
log "running mmdebstrap (about a minute; its progress follows)"
mmdebstrap "${mm_args[@]}" "$suite" "$new" "$sources" \
    || die "mmdebstrap failed (see its output above; a 'Could not resolve' means the Debian mirror is unreachable)"

log "post-install: removing paths, creating mount points, copying files/"
for step in "${post[@]}"; do
    op=${step%% *}
    arg=${step#* }
    case $op in
        rm)
            # unquoted on purpose: the pattern may hold a glob (var/log/*)
            # shellcheck disable=SC2086
            rm -rf --one-file-system "${new:?}"/$arg
            ;;
        mkdir) mkdir -p "$new/$arg" ;;
    esac
done
# Files from excluded paths that the Essential set unpacked before the dpkg filter applied.
find "$new/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
find "$new/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf --one-file-system "$new/usr/share/man" "$new/usr/share/info" "$new/usr/share/locale"
if [[ -n $files_dir ]]; then
    # Owner root, modes as in the repository tree.
    cp -a --no-preserve=ownership "$files_dir/." "$new/"
fi

rm -rf --one-file-system "$dest/rootfs"
mv "$new" "$dest/rootfs"
echo "$hash" >"$stamp"
size=$(du -sm "$dest/rootfs" | cut -f1)
log "done: $dest/rootfs, ${size} MiB, $((SECONDS - start)) s"
