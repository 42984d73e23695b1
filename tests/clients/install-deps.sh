#!/usr/bin/env bash
# Install what tests/clients/run.sh needs, from Debian 12's own packages (no registry images, no
# downloads). --no-install-recommends keeps out apparmor, netavark, slirp4netns, fuse-overlayfs,
# buildah. Packages start no service here: no systemd runs and policy-rc.d refuses starts.
set -euo pipefail
pkgs=(containerd podman docker.io jq busybox-static bsdutils util-linux procps coreutils tar)
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${pkgs[@]}"; }
apt_install || { apt-get update -qq && apt_install; }
containerd --version; podman --version; /usr/bin/docker --version; conmon --version | head -n1
