#!/bin/bash
# The main job: two tenants with one WordPress site each, each site in its own namespaces,
# cgroups and UID range, under the wordpress profile, on its tenant's volume, supervised by its
# own shim, served through the front proxy by domain, installed over HTTP. Prints the URLs.
#
# Usage: scripts/demo.sh [--clean]     (as root; `make demo` builds and runs it)
#   --clean   stop and remove the demo's sites (with their data), tenants and the proxy
# Environment: SGRUN (default target/x86_64-unknown-linux-gnu/release/sgrun, the shim beside
#   it), SGRUN_STATE_DIR (default /var/lib/sgrun), PORT (default 8080).
# Run it again: what exists is kept (image, tenants, sites, data); what is stopped is started.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
SGRUN=${SGRUN:-$top/target/x86_64-unknown-linux-gnu/release/sgrun}
[[ -x $SGRUN ]] || { echo "demo: $SGRUN not found: make build shim" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "demo: run as root (containers, mounts, cgroups)" >&2; exit 1; }
export SGRUN_STATE_DIR=${SGRUN_STATE_DIR:-/var/lib/sgrun}
port=${PORT:-8080}
sg() { "$SGRUN" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
sites=(alice/blog bob/shop)
domain() { local s=$1; echo "${s#*/}.${s%/*}.localhost"; }
title() { case $1 in alice/blog) echo "Alice's blog" ;; *) echo "Bob's shop" ;; esac; }
creds=$SGRUN_STATE_DIR/demo/credentials

if [[ ${1:-} == --clean ]]; then
    step "removing the demo"
    sg proxy stop 2>/dev/null || true
    for s in "${sites[@]}"; do sg site rm --force --purge "$s" 2>/dev/null || true; done
    for t in alice bob; do sg tenant rm --purge "$t" 2>/dev/null || true; done
    rm -f "$creds"
    echo "done (the image stays: sgrun image rm wordpress)"
    exit 0
fi

step "1. the WordPress image (Debian 12 packages, built once)"
sg image build "$top/images/wordpress"

step "2. two tenants: a UID range and a 2 GiB volume each"
for t in alice bob; do
    sg tenant show "$t" >/dev/null 2>&1 || sg tenant create "$t" --storage 2G --inodes 200000
done
sg tenant ls

step "3. one site per tenant: image + profile + limits + domain"
for s in "${sites[@]}"; do
    sg site status "$s" >/dev/null 2>&1 ||
        sg site create "$s" --image wordpress --profile wordpress --domain "$(domain "$s")" \
            --memory 512M --cpus 1 --pids 256
done

step "4. start them (one shim each; the first start creates the database)"
for s in "${sites[@]}"; do
    if [[ $(sg site status --json "$s" | jq -r .state) == running ]]; then
        echo "site $s already running"
    else
        sg site start "$s"
    fi
done

step "5. the front proxy (nginx), routing by Host header to each site's socket"
if sg proxy status --json 2>/dev/null | jq -e .running >/dev/null; then
    sg proxy reload
else
    sg proxy start --listen "127.0.0.1:$port"
fi

step "6. the WordPress install of each site, over HTTP"
mkdir -p "$(dirname "$creds")"
chmod 0700 "$(dirname "$creds")"
for s in "${sites[@]}"; do
    d=$(domain "$s")
    page=$(curl -s --max-time 60 "http://$d:$port/wp-admin/install.php")
    if grep -q 'Already Installed' <<<"$page"; then
        echo "$d: already installed"
        continue
    fi
    pw=$(head -c 12 /dev/urandom | base64 | tr '+/' 'xy')
    curl -s --max-time 120 -o /dev/null -w "$d: install answered HTTP %{http_code}\n" \
        "http://$d:$port/wp-admin/install.php?step=2" \
        --data-urlencode "weblog_title=$(title "$s")" --data-urlencode "user_name=admin" \
        --data-urlencode "admin_password=$pw" --data-urlencode "admin_password2=$pw" \
        --data-urlencode "pw_weak=on" --data-urlencode "admin_email=admin@$d" \
        --data-urlencode "blog_public=0" --data-urlencode "Submit=Install WordPress"
    (umask 077; grep -v "^$s " "$creds" 2>/dev/null > "$creds.new" || true
     echo "$s admin $pw" >> "$creds.new"; mv "$creds.new" "$creds")
done

step "7. each tenant sees only its own site"
vol_bob=$(sg tenant show --json bob | jq -r .mount_path)
echo "\$ sgrun exec alice/blog ls /srv/site"
sg exec alice/blog ls /srv/site
echo "\$ sgrun exec alice/blog cat $vol_bob/sites/shop/wp-salts.php"
sg exec alice/blog cat "$vol_bob/sites/shop/wp-salts.php" 2>&1 | head -n 1 || true
echo "\$ sgrun exec alice/blog mariadb -N -e 'show databases'"
sg exec alice/blog mariadb -N -e 'show databases' | tr '\n' ' '; echo

step "the sites"
sg site ls
echo
for s in "${sites[@]}"; do
    d=$(domain "$s")
    t=$(curl -s --max-time 30 "http://$d:$port/" | grep -o '<title>[^<]*' | head -n1 | sed "s/<title>//; s/&#039;/'/g")
    pw=$(awk -v s="$s" '$1 == s { print $3 }' "$creds" 2>/dev/null)
    printf '  %-12s http://%s:%s/   "%s"   admin: http://%s:%s/wp-admin/ (admin / %s)\n' \
        "$s" "$d" "$port" "$t" "$d" "$port" "${pw:-see $creds}"
done
cat <<EOT

Open them in curl or a browser on this machine. Try:
  sgrun site status alice/blog       sgrun site logs -f bob/shop
  sgrun stats alice/blog bob/shop    sgrun exec -t alice/blog bash
  scripts/demo.sh --clean            remove the demo's sites and tenants
EOT
