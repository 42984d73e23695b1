# shellcheck shell=bash
# build_image DIR: a busybox image without any registry, in the three forms the clients take.
#   DIR/rootfs/             plain rootfs (tests/rootfs/busybox.sh: busybox-static + applet links)
#   DIR/rootfs.tar          that rootfs as one tarball             -> docker import
#   DIR/busybox-oci.tar     OCI image layout, tar'ed               -> ctr image import
#   DIR/busybox-docker.tar  docker-archive (`docker save` format)  -> podman load
# One uncompressed layer (the rootfs tarball itself), so diff_id == layer digest. Tarballs are
# reproducible (sorted, owner 0, mtime 0), so the digests are the same on every run.
# Image names: $IMAGE_NAME (OCI annotation, what ctr lists) and $IMAGE_TAG (docker-archive).

IMAGE_NAME=docker.io/sgclients/busybox:latest
IMAGE_TAG=sgclients/busybox:latest

_tar_reproducible() {  # _tar_reproducible SRC-DIR OUT.tar
    tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu -cf "$2" .
}
_sha() { sha256sum "$1" | cut -d' ' -f1; }
_size() { stat -c %s "$1"; }

build_image() {
    local dir=$1 repo
    repo=$(cd "$HERE/../.." && pwd)
    mkdir -p "$dir"
    "$repo/tests/rootfs/busybox.sh" "$dir" >&2 || return 1
    rm -f "$dir/rootfs/.sgrun-rootfs-ready"      # the builder's stamp is not part of the image
    printf 'sgclients\n' >"$dir/rootfs/etc/hostname"
    _tar_reproducible "$dir/rootfs" "$dir/rootfs.tar" || return 1

    local layer layer_sz cfg cfg_sz man man_sz w
    layer=$(_sha "$dir/rootfs.tar"); layer_sz=$(_size "$dir/rootfs.tar")

    # image config (shared by both archive forms)
    w=$dir/work; rm -rf "$w"; mkdir -p "$w"
    jq -cn --arg d "sha256:$layer" '{
        architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
        config: { Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], Cmd: ["/bin/sh"], WorkingDir: "/" },
        rootfs: { type: "layers", diff_ids: [$d] },
        history: [ { created: "1970-01-01T00:00:00Z", created_by: "tests/clients/image.sh" } ] }' \
        | tr -d '\n' >"$w/config.json"
    cfg=$(_sha "$w/config.json"); cfg_sz=$(_size "$w/config.json")

    # --- OCI image layout -------------------------------------------------------------------
    local oci=$w/oci
    mkdir -p "$oci/blobs/sha256"
    ln "$dir/rootfs.tar" "$oci/blobs/sha256/$layer" 2>/dev/null || cp "$dir/rootfs.tar" "$oci/blobs/sha256/$layer"
    cp "$w/config.json" "$oci/blobs/sha256/$cfg"
    jq -cn --arg c "sha256:$cfg" --argjson cs "$cfg_sz" --arg l "sha256:$layer" --argjson ls "$layer_sz" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs },
        layers: [ { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls } ] }' \
        | tr -d '\n' >"$w/manifest.json"
    man=$(_sha "$w/manifest.json"); man_sz=$(_size "$w/manifest.json")
    cp "$w/manifest.json" "$oci/blobs/sha256/$man"
    printf '{"imageLayoutVersion":"1.0.0"}\n' >"$oci/oci-layout"
    # containerd names the image after io.containerd.image.name; others use ref.name (the tag)
    jq -n --arg m "sha256:$man" --argjson ms "$man_sz" --arg n "$IMAGE_NAME" '{
        schemaVersion: 2,
        manifests: [ { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
                       platform: { architecture: "amd64", os: "linux" },
                       annotations: { "io.containerd.image.name": $n,
                                      "org.opencontainers.image.ref.name": "latest" } } ] }' >"$oci/index.json"
    _tar_reproducible "$oci" "$dir/busybox-oci.tar" || return 1

    # --- docker-archive -----------------------------------------------------------------------
    local da=$w/docker
    mkdir -p "$da/$layer"
    ln "$dir/rootfs.tar" "$da/$layer/layer.tar" 2>/dev/null || cp "$dir/rootfs.tar" "$da/$layer/layer.tar"
    printf '1.0\n' >"$da/$layer/VERSION"
    cp "$w/config.json" "$da/$cfg.json"
    jq -cn --arg c "$cfg.json" --arg l "$layer/layer.tar" --arg t "$IMAGE_TAG" \
        '[ { Config: $c, RepoTags: [$t], Layers: [$l] } ]' >"$da/manifest.json"
    jq -cn --arg r "${IMAGE_TAG%:*}" --arg id "$layer" '{ ($r): { latest: $id } }' >"$da/repositories"
    _tar_reproducible "$da" "$dir/busybox-docker.tar" || return 1

    rm -rf "$w"
    IMAGE_CONFIG_DIGEST=sha256:$cfg
}
