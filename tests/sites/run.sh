#!/bin/bash
# End-to-end: two tenants with one WordPress site each, started by `sgrun site start` (one shim
# per site, no containerd), served through `sgrun proxy` by Host header, installed over HTTP,
# and checked for isolation, supervision and bad input:
#
#   1. image (built once into SGRUN_STATE_DIR), two tenants, two sites; bad input refused
#   2. start both; the proxy routes each domain to its site; WordPress installed over HTTP
#   3. isolation: neither site sees the other's files, database or sockets
#   4. a crash (MariaDB killed) is restarted by the shim; a killed shim kills nothing else;
#      a tenant that swaps its socket for a symlink to the other site's gets 503, never that site
#   5. a stopped site answers "not running" through the proxy, the other one still serves
#   6. host restart: `site start --all` brings back what was running, not what was stopped
#   7. a stack that fails to start: the error shows its log; nothing is left; others untouched
#   8. rm, purge, proxy stop: nothing left behind (containers, shims, cgroups, mounts)
#
# Usage: tests/sites/run.sh        (as root)
# Environment (optional):
#   SGRUN            sgrun binary (default: target/release/sgrun); the shim is found beside it
#                    or set SGRUN_SHIM
#   SGRUN_STATE_DIR  state directory (image store, tenants, sites); default /var/tmp/sgrun-wp-state,
#                    shared with tests/wordpress so that the image is built once
#   START_TIMEOUT    seconds for a site's first HTTP answer (default 180)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
die() { echo "not ok - $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
now_ms() { local s=${EPOCHREALTIME/./}; echo $((s / 1000)); }

[[ $(id -u) -eq 0 ]] || die "must run as root (containers, mounts, cgroups)"
for tool in jq curl python3 findmnt nginx; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh --for test)"
done
SGRUN=${SGRUN:-$repo/target/release/sgrun}
[[ -x $SGRUN ]] || die "no sgrun binary at $SGRUN: make build, or set SGRUN"
shim=${SGRUN_SHIM:-$(dirname "$SGRUN")/containerd-shim-sgrun-v1}
[[ -x $shim ]] || die "no shim at $shim: make shim, or set SGRUN_SHIM"
export SGRUN_SHIM=$shim
export SGRUN_STATE_DIR=${SGRUN_STATE_DIR:-/var/tmp/sgrun-wp-state}
start_timeout=${START_TIMEOUT:-180}
root=$(mktemp -d /run/sgrun-sites-e2e.XXXXXX)
work=$(mktemp -d /var/tmp/sgrun-sites-e2e.XXXXXX)
sg() { "$SGRUN" --root "$root" "$@"; }
ta=ea$$ tb=eb$$
a=$ta/blog b=$tb/shop
da=blog.$ta.localhost db=shop.$tb.localhost
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
proxy_started=0

# --- cleanup: always; fails the run if anything is left -------------------------------------
shim_pids=()
cleanup() {
    local rc=$? found=0 id p d
    set +e
    [[ $proxy_started == 1 ]] && sg proxy stop >/dev/null 2>&1
    for s in "$a" "$b" "$ta/broken"; do
        sg site status "$s" >/dev/null 2>&1 || continue
        sg site rm --force --purge "$s" 2>&1 >/dev/null | sed 's/^/# cleanup: /'
    done
    for t in "$ta" "$tb"; do sg tenant rm --purge "$t" 2>&1 >/dev/null | sed 's/^/# cleanup: /'; done
    sg delete -f "$ta.weak" >/dev/null 2>&1
    for id in "$ta.blog" "$tb.shop" "$ta.broken" "$ta.weak"; do
        if sg state "$id" >/dev/null 2>&1; then echo "# leftover: container $id"; found=1; sg delete -f "$id" >/dev/null 2>&1; fi
        for d in /sys/fs/cgroup/*/sgrun/"$id"; do
            if [[ -e $d ]]; then echo "# leftover: cgroup $d"; found=1; fi
        done
    done
    for p in "${shim_pids[@]}"; do
        # a zombie is not left running: here pid 1 does not reap the shims it inherits
        if [[ -n $p ]] && [[ $(cat /proc/"$p"/comm 2>/dev/null) == containerd-shim* ]] &&
            [[ $(awk '{ print $3 }' /proc/"$p"/stat 2>/dev/null) != Z ]]; then
            echo "# leftover: shim pid $p"; found=1; kill -KILL "$p"
        fi
    done
    if findmnt -rn -o TARGET | grep -qE "/tenants/($ta|$tb)/|$root"; then
        echo "# leftover: mounts $(findmnt -rn -o TARGET | grep -E "/tenants/($ta|$tb)/|$root" | tr '\n' ' ')"; found=1
    fi
    if [[ $found == 1 ]]; then echo "not ok - cleanup: something was left behind"; rc=1; fi
    if [[ $rc -ne 0 ]]; then
        for s in "$a" "$b"; do
            f=$SGRUN_STATE_DIR/sites/${s%/*}/${s#*/}/console.log
            [[ -f $f ]] && { echo "# --- $f"; tail -n 20 "$f" | sed 's/^/#   /'; }
        done
    fi
    rm -rf --one-file-system "$work"
    rmdir "$root" 2>/dev/null || rm -rf --one-file-system "$root"
    exit "$rc"
}
trap cleanup EXIT

# expect_fail WHAT PATTERN CMD...: the command must exit non-zero and its stderr name PATTERN
expect_fail() {
    local what=$1 pattern=$2 err
    shift 2
    if err=$("$@" 2>&1 >/dev/null); then die "$what: succeeded, but it must be refused"; fi
    grep -qiE -- "$pattern" <<<"$err" || die "$what: the error does not say /$pattern/: $err"
    ok "$what refused: $(head -n1 <<<"$err" | cut -c1-150)"
}
# http URL [CURL ARGS]: prints the status code; the body goes to $work/body
http() { curl -s -o "$work/body" -w '%{http_code}' --max-time 60 "$@" || true; }
url() { echo "http://$1:$port$2"; }
state_of() { sg site status --json "$1" | jq -r .state; }

# --- 1. image, tenants, sites, bad input -------------------------------------------------------
t=$(now_ms)
sg image build --quiet "$repo/images/wordpress" >/dev/null || die "sgrun image build failed"
ok "image wordpress ready ($(($(now_ms) - t)) ms)"
sg tenant create "$ta" --storage 1G --inodes 100000 >/dev/null || die "tenant create $ta"
sg tenant create "$tb" --storage 1G --inodes 100000 >/dev/null || die "tenant create $tb"
sg site create "$a" --image wordpress --profile wordpress --domain "$da" --memory 512M --cpus 1 --pids 256 \
    --restart-backoff 200ms >/dev/null || die "site create $a"
sg site create "$b" --domain "$db" --memory 384M >/dev/null || die "site create $b"
ok "tenants $ta, $tb; sites $a ($da), $b ($db)"

expect_fail "unknown tenant" "tenant nosuch$$ does not exist" sg site create "nosuch$$/x" --domain x$$.localhost
expect_fail "unknown image" "no image" sg site create "$ta/x" --image nosuch --domain x$$.localhost
expect_fail "unknown profile" "profile \"nosuch\"" sg site create "$ta/x" --profile nosuch --domain x$$.localhost
expect_fail "duplicate site" "already exists" sg site create "$a" --domain other$$.localhost
expect_fail "duplicate domain" "already served by site $a" sg site create "$ta/x" --domain "$da"
expect_fail "memory below the stack's need" "below what the stack needs" sg site create "$ta/x" --domain x$$.localhost --memory 64M
expect_fail "pids below the stack's need" "below what the stack needs" sg site create "$ta/x" --domain x$$.localhost --pids 8
expect_fail "bad domain" "domain" sg site create "$ta/x" --domain 'x;include /etc/passwd.localhost'
expect_fail "bad site name" "site" sg site create "$ta/../x" --domain x$$.localhost
expect_fail "start of an unknown site" "does not exist" sg site start "$ta/nosuch"
[[ $(sg site ls --json | jq "[.[] | select(.site == \"$a\" or .site == \"$b\" or (.site | startswith(\"$ta/x\")))] | length") == 2 ]] ||
    die "refused creates left records: $(sg site ls)"
ok "refused creates left no record"

# --- 2. start, proxy, install ----------------------------------------------------------------
t=$(now_ms)
sg site start --timeout "$start_timeout" "$a" "$b" || die "site start $a $b"
ok "both sites started in $(($(now_ms) - t)) ms (first start: databases created)"
for s in "$a" "$b"; do
    [[ $(state_of "$s") == running ]] || die "$s is not running: $(sg site status "$s")"
    shim_pids+=("$(sg site status --json "$s" | jq -r .shim_pid)")
done
expect_fail "start of a started site" "already started" sg site start "$a"

sg proxy start --listen "127.0.0.1:$port" >/dev/null || die "sgrun proxy start"
proxy_started=1
ok "proxy on 127.0.0.1:$port"

wp_install() { # DOMAIN TITLE
    local code
    code=$(http "$(url "$1" /wp-admin/install.php)")
    [[ $code == 200 ]] || die "install form of $1: HTTP $code"
    code=$(http "$(url "$1" '/wp-admin/install.php?step=2')" \
        --data-urlencode "weblog_title=$2" --data-urlencode "user_name=admin" \
        --data-urlencode "admin_password=e2e-$$-pw" --data-urlencode "admin_password2=e2e-$$-pw" \
        --data-urlencode "pw_weak=on" --data-urlencode "admin_email=admin@$1" \
        --data-urlencode "blog_public=0" --data-urlencode "Submit=Install WordPress")
    [[ $code == 200 ]] && grep -q 'Success!' "$work/body" || die "install of $1: HTTP $code"
}
title_a="Alpha blog $$" title_b="Bravo shop $$"
wp_install "$da" "$title_a"
wp_install "$db" "$title_b"
ok "WordPress installed on both sites over HTTP through the proxy"
code=$(http "$(url "$da" /)")
[[ $code == 200 ]] && grep -qF "$title_a" "$work/body" && ! grep -qF "$title_b" "$work/body" ||
    die "front page of $da: HTTP $code, or not its own title"
code=$(http "$(url "$db" /)")
[[ $code == 200 ]] && grep -qF "$title_b" "$work/body" && ! grep -qF "$title_a" "$work/body" ||
    die "front page of $db: HTTP $code, or not its own title"
ok "each domain serves its own site's front page"
code=$(http "$(url "nosuch.localhost" /)")
[[ $code == 404 ]] || die "an unknown Host answered $code, not 404"
ok "an unknown Host gets 404"

# --- 2b. the SRE toolbox by site name ---------------------------------------------------------
grep -q mariadbd <<<"$(sg ps "$a")" || die "sgrun ps $a does not list mariadbd"
[[ $(sg stats --no-stream --json "$a" | jq -r '.[0].id') == "$ta.blog" ]] || die "sgrun stats $a"
[[ $(sg site stats --no-stream --json | jq 'length') -ge 2 ]] || die "sgrun site stats"
[[ $(sg inspect "$a" | jq -r '.tenant.name') == "$ta" ]] || die "sgrun inspect $a does not name its tenant"
# (captured first: with pipefail, `grep -q` leaving early would fail the pipeline with SIGPIPE)
grep -q "site ready" <<<"$(sg logs "$a")" || die "sgrun logs $a does not show the stack's output"
[[ $(sg logs -n 3 "$a" | wc -l) == 3 ]] || die "sgrun logs -n 3 $a did not print 3 lines"
grep -q "site ready" <<<"$(sg site logs "$b")" || die "sgrun site logs $b"
expect_fail "exec into an unknown site" "$ta/nosuch does not exist" sg exec "$ta/nosuch" true
ok "ps, stats, inspect, logs and exec take site names"

# --- 3. isolation ----------------------------------------------------------------------------
vol_b=$(sg tenant show --json "$tb" | jq -r .mount_path)
[[ -f $vol_b/sites/shop/wp-salts.php ]] || die "test set-up: $b's salts are not at $vol_b/sites/shop"
# isolation_holes CONTAINER: prints one line per way CONTAINER reaches the other tenant's site
isolation_holes() {
    local c=$1 out n
    out=$(sg exec "$c" sh -c "cat '$vol_b/sites/shop/wp-salts.php' /srv/other/wp-salts.php 2>/dev/null; true")
    grep -q "define(" <<<"$out" && echo "files: reads $b's salts"
    out=$(sg exec "$c" find / -name wp-salts.php -not -path '/proc/*' 2>/dev/null || true)
    [[ -z $out || $out == /srv/site/wp-salts.php ]] || echo "files: sees other sites' salts: $(tr '\n' ' ' <<<"$out")"
    # MariaDB servers whose processes it can see: its own at most
    n=$(sg exec "$c" sh -c 'n=0; for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = mariadbd ] && n=$((n+1)); done; echo $n')
    ((n <= 1)) || echo "processes: sees $n MariaDB servers"
    n=$(sg exec "$c" cat /proc/net/unix | grep -c 'mysqld.sock' || true)
    ((n <= 1)) || echo "network: sees $n mysqld sockets in its network namespace"
}
holes=$(isolation_holes "$a")
[[ -z $holes ]] || die "$a reaches $b: $holes"
ok "files, processes, sockets: $a sees only its own (not $b's volume, not the state directory)"
q="select option_value from wordpress.wp_options where option_name='blogname'"
[[ $(sg exec "$a" mariadb -N -e "$q") == "$title_a" ]] || die "$a's database does not hold its own title"
[[ $(sg exec "$b" mariadb -N -e "$q") == "$title_b" ]] || die "$b's database does not hold its own title"
grep -qF "$title_b" <<<"$(sg exec "$a" mariadb -N -e "select option_value from wordpress.wp_options")" &&
    die "$a's database holds $b's title"
ok "database: each site has its own server and data"

# The same checks must catch a hole: a weakened twin of $a's container (same tenant, image
# and profile) that sees the host's /proc and has a host directory with $b's salts mounted.
# (B's volume root is B's alone, 0700: a copy of its salts stands for B's data.)
install -d -m 0755 "$work/other" && install -m 0644 "$vol_b/sites/shop/wp-salts.php" "$work/other/"
chmod 0755 "$work"
jq --arg src "$work/other" '
    .annotations["io.sgrun.site"] = "weak"
    | .mounts |= map(if .destination == "/proc"
                     then {destination: "/proc", type: "bind", source: "/proc", options: ["rbind", "ro"]}
                     else . end)
    | .process.args = ["/usr/bin/tini", "--", "/bin/sleep", "600"]
    | .mounts += [{destination: "/srv/other", type: "bind", source: $src, options: ["rbind", "ro"]}]
    | .linux.cgroupsPath = "/sgrun/\(.annotations["io.sgrun.tenant"]).weak"
    ' "$SGRUN_STATE_DIR/sites/$ta/blog/bundle/config.json" >"$work/weak-config.json"
mkdir -p "$work/weak" && mv "$work/weak-config.json" "$work/weak/config.json"
sg run -d -b "$work/weak" "$ta.weak" >/dev/null 2>"$work/weak.err" || die "the weakened twin did not start: $(cat "$work/weak.err")"
holes=$(isolation_holes "$ta.weak")
sg delete -f "$ta.weak" >/dev/null 2>&1
grep -q "^files:" <<<"$holes" && grep -q "^processes:" <<<"$holes" ||
    die "the isolation checks missed the weakened twin's holes (found: ${holes:-none})"
ok "the checks catch a weakened twin: $(tr '\n' ';' <<<"$holes")"

# --- 4. supervision ----------------------------------------------------------------------------
sg exec "$a" sh -c 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = mariadbd ] && kill -KILL ${p#/proc/}; done; true'
deadline=$(($(now_ms) + start_timeout * 1000))
until [[ $(sg site status --json "$a" | jq -r '"\(.state) \(.restarts)"') == "running 1" ]] &&
      [[ $(http "$(url "$da" /)") == 200 ]]; do
    (($(now_ms) > deadline)) && die "$a was not restarted after MariaDB was killed: $(sg site status "$a")"
    sleep 0.2
done
grep -qF "$title_a" "$work/body" || die "$a came back without its data"
grep -q '"/sgrun/restart"' "$SGRUN_STATE_DIR/sites/$ta/blog/events.jsonl" || die "no restart event in events.jsonl"
ok "a crash (MariaDB killed) was restarted by the shim: serving again with its data; events.jsonl has it"

shim_a=$(sg site status --json "$a" | jq -r .shim_pid)
kill -KILL "$shim_a"
for _ in $(seq 100); do kill -0 "$shim_a" 2>/dev/null || break; sleep 0.05; done
[[ $(state_of "$a") == shim-lost ]] || die "after its shim was killed, $a is $(state_of "$a"), not shim-lost"
grep -q "killed or crashed" <<<"$(sg site status "$a")" || die "status does not say what happened: $(sg site status "$a")"
[[ $(state_of "$b") == running && $(http "$(url "$db" /)") == 200 ]] || die "killing $a's shim disturbed $b"
ok "a killed shim kills nothing else: $b serves; status says: $(sg site status --json "$a" | jq -r .detail | cut -c1-100)"
sg site restart --timeout "$start_timeout" "$a" >/dev/null || die "site restart $a after a lost shim"
[[ $(state_of "$a") == running && $(http "$(url "$da" /)") == 200 ]] || die "$a did not come back under a new shim"
shim_pids+=("$(sg site status --json "$a" | jq -r .shim_pid)")
ok "site restart supervises it again"

# --- 4c. the tenant swaps its socket for a symlink to the other site's ------------------------
# The socket's directory is the tenant's; the proxy checked the socket when it applied the
# routes, and sees it without symlinks since (docs/proxy.md "socket_root"): 503, never $b.
sock_b=$(sg site status --json "$b" | jq -r .http_socket)
# Then its nginx reloads (HUP), which closes the proxy's idle keep-alive connections to it:
# the proxy's next request must connect(2) by the path again.
sg exec "$a" /bin/sh -c "rm -f /run/sgrun-http/http.sock && ln -s '$sock_b' /run/sgrun-http/http.sock && kill -HUP \$(cat /run/nginx.pid)" ||
    die "the tenant of $a could not replace its socket (the test needs it to)"
sleep 0.5
code=$(http "$(url "$da" /)")
[[ $code == 503 ]] && ! grep -qF "$title_b" "$work/body" ||
    die "after $a swapped its socket for a symlink to $b's, $da answered $code ($(grep -o '<title>[^<]*' "$work/body" | head -n 1)): $(head -c 200 "$work/body")"
[[ $(http "$(url "$db" /)") == 200 ]] && grep -qF "$title_b" "$work/body" || die "$db stopped serving"
sg site restart --timeout "$start_timeout" "$a" >/dev/null || die "site restart $a after the swap"
code=$(http "$(url "$da" /)")
[[ $code == 200 ]] && grep -qF "$title_a" "$work/body" || die "$a did not come back after the swap: HTTP $code"
shim_pids+=("$(sg site status --json "$a" | jq -r .shim_pid)")
ok "a socket swapped for a symlink to $b's is not followed by the proxy (503); a restart brings $a back"

# --- 5. a stopped site -----------------------------------------------------------------------
sg site stop "$b" >/dev/null || die "site stop $b"
[[ $(state_of "$b") == stopped ]] || die "$b is $(state_of "$b") after stop"
code=$(http "$(url "$db" /)")
[[ $code == 502 || $code == 503 ]] && grep -qi "not running" "$work/body" || die "a stopped site answered $code: $(head -c 200 "$work/body")"
[[ $(http "$(url "$da" /)") == 200 ]] || die "$a stopped serving when $b stopped"
grep -q "Shutdown complete" "$SGRUN_STATE_DIR/sites/$tb/shop/console.log" || die "$b's MariaDB did not shut down cleanly"
ok "a stopped site answers $code 'not running' through the proxy; the other serves; MariaDB shut down cleanly"

# --- 6. host restart ---------------------------------------------------------------------------
shim_a=$(sg site status --json "$a" | jq -r .shim_pid)
kill -KILL "$shim_a"
sg delete -f "$ta.blog" >/dev/null 2>&1 || true
rm -rf "$root/.sites"
[[ $(state_of "$a") == stopped ]] || die "after a simulated host restart $a is $(state_of "$a")"
sg site start --all --timeout "$start_timeout" >/dev/null || die "site start --all"
[[ $(state_of "$a") == running ]] || die "start --all did not bring $a back"
[[ $(state_of "$b") == stopped ]] || die "start --all started $b, which had been stopped"
[[ $(http "$(url "$da" /)") == 200 ]] && grep -qF "$title_a" "$work/body" || die "$a after start --all"
shim_pids+=("$(sg site status --json "$a" | jq -r .shim_pid)")
ok "site start --all after a host restart: $a back with its data, $b left stopped"

# --- 7. a stack that fails to start ------------------------------------------------------------
sg site create "$ta/broken" --domain "broken.$ta.localhost" >/dev/null || die "site create $ta/broken"
vol_a=$(sg tenant show --json "$ta" | jq -r .mount_path)
base_a=$(sg tenant show --json "$ta" | jq -r .uid_base)
# its datadir belongs to the tenant's root, not to mysql: the stack's init refuses it
install -d -o "$base_a" -g "$base_a" -m 0755 "$vol_a/sites/broken"
install -d -o "$base_a" -g "$base_a" -m 0700 "$vol_a/sites/broken/mysql"
expect_fail "a stack that fails to start (the error shows its log)" "belongs to" sg site start --timeout 60 "$ta/broken"
[[ $(state_of "$ta/broken") == stopped ]] || die "the failed site is $(state_of "$ta/broken")"
sg state "$ta.broken" >/dev/null 2>&1 && die "the failed site's container was left"
[[ -e $root/.sites/$ta/broken ]] && die "the failed site's run directory was left"
[[ $(http "$(url "$da" /)") == 200 ]] || die "$a was disturbed by the failed start"
ok "nothing of the failed start is left; $a untouched"

# --- 8. rm -------------------------------------------------------------------------------------
expect_fail "rm of a running site" "is running" sg site rm "$a"
sg site rm --force --purge "$a" >/dev/null || die "site rm --force --purge $a"
[[ -e $vol_a/sites/blog ]] && die "rm --purge left $a's data"
sg site rm "$b" >/dev/null || die "site rm $b"
[[ -e $vol_b/sites/shop/wp-salts.php ]] || die "rm without --purge deleted $b's data"
sg site rm --purge "$ta/broken" >/dev/null
sg proxy stop >/dev/null || die "proxy stop"
proxy_started=0
ok "sites removed (data kept without --purge), proxy stopped"
