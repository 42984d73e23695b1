#!/bin/bash
# Drive the WordPress flow of a freshly started site through its unix socket, like a user and
# a REST client would: install, front page, login, dashboard, media upload and read-back
# over REST, a post over REST, wp-cron.
#
# Usage: tests/wordpress/flow.sh SOCKET_PATH
# Environment (optional):
#   SITE_HOST       Host header and site URL host        default: blog.example.test
#   SITE_TITLE      site title set at install             default: sgrun flow <random>
#   ADMIN_USER      default: admin;  ADMIN_PASSWORD: default random; ADMIN_EMAIL
#   START_TIMEOUT   seconds to wait for the first HTTP answer   default: 60
#   CURL_TIMEOUT    seconds for each request                    default: 30
#
# Prints one TAP-like line per step, `ok - step (N ms)` or `not ok - step: reason`, and exits
# 1 at the first failure (2 for bad usage or a missing tool).
set -euo pipefail

usage() { echo "usage: $0 SOCKET_PATH" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
sock=$1
for tool in curl jq python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "flow: $tool is missing (apt-get install $tool)" >&2; exit 2; }
done

host=${SITE_HOST:-blog.example.test}
title=${SITE_TITLE:-sgrun flow $RANDOM$RANDOM}
user=${ADMIN_USER:-admin}
password=${ADMIN_PASSWORD:-$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')}
email=${ADMIN_EMAIL:-admin@example.test}
start_timeout=${START_TIMEOUT:-60}
curl_timeout=${CURL_TIMEOUT:-30}
base=http://$host

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
jar=$work/cookies

now_ms() { local s=${EPOCHREALTIME/./}; echo $((s / 1000)); }
step_start=$(now_ms)
flow_start=$step_start
ok() { echo "ok - $1 ($(($(now_ms) - step_start)) ms)"; step_start=$(now_ms); }
fail() { echo "not ok - $1: $2"; exit 1; }

# req OUT PATH [curl args...]: one request through the socket; prints the HTTP status
# ("000" when there was no answer). The body goes to OUT, the headers to OUT.h.
req() {
    local out=$1 path=$2
    shift 2
    curl -sS --max-time "$curl_timeout" --unix-socket "$sock" -H "Host: $host" \
        -b "$jar" -c "$jar" -o "$out" -D "$out.h" -w '%{http_code}' "$@" "$base$path" \
        2>"$out.err" || true
}
# why OUT: a short reason for a failed request (curl's error or the start of the body).
why() {
    if [[ -s $1.err ]]; then head -c 200 "$1.err" | tr '\n' ' '
    else head -c 300 "$1" | tr -s '\n\t ' ' '; fi
}

# --- 1. first answer ---------------------------------------------------------------------
deadline=$(($(now_ms) + start_timeout * 1000))
code=000
while :; do
    if [[ -S $sock ]]; then
        code=$(req "$work/first" / --max-time 5)
        [[ $code != 000 ]] && break
    fi
    (($(now_ms) > deadline)) &&
        fail "first HTTP answer" "none within ${start_timeout}s on $sock ($(why "$work/first" 2>/dev/null || echo 'no socket'))"
    sleep 0.05
done
ok "first HTTP answer: $code after $(($(now_ms) - flow_start)) ms"

# --- 2. install ------------------------------------------------------------------------------
code=$(req "$work/inst1" /wp-admin/install.php)
[[ $code == 200 ]] || fail "install form" "GET /wp-admin/install.php answered $code: $(why "$work/inst1")"
grep -q 'Already Installed' "$work/inst1" &&
    fail "install form" "the site is already installed: flow.sh needs a new site (empty data directory)"
code=$(req "$work/inst2" '/wp-admin/install.php?step=2' \
    --data-urlencode "weblog_title=$title" --data-urlencode "user_name=$user" \
    --data-urlencode "admin_password=$password" --data-urlencode "admin_password2=$password" \
    --data-urlencode "pw_weak=on" --data-urlencode "admin_email=$email" \
    --data-urlencode "blog_public=0" --data-urlencode "language=" --data-urlencode "Submit=Install WordPress")
[[ $code == 200 ]] || fail "install" "POST install.php?step=2 answered $code: $(why "$work/inst2")"
grep -q 'Success!' "$work/inst2" || fail "install" "no 'Success!' in the answer: $(why "$work/inst2")"
ok "install (site title '$title', user $user)"

# --- 3. front page -----------------------------------------------------------------------------
code=$(req "$work/front" /)
[[ $code == 200 ]] || fail "front page" "GET / answered $code: $(why "$work/front")"
grep -qF "$title" "$work/front" || fail "front page" "the site title '$title' is not in the page"
ok "front page"

# --- 4. login ------------------------------------------------------------------------------------
code=$(req "$work/login0" /wp-login.php)
[[ $code == 200 ]] || fail "login form" "GET /wp-login.php answered $code: $(why "$work/login0")"
code=$(req "$work/login" /wp-login.php \
    --data-urlencode "log=$user" --data-urlencode "pwd=$password" --data-urlencode "wp-submit=Log In" \
    --data-urlencode "redirect_to=$base/wp-admin/" --data-urlencode "testcookie=1")
[[ $code == 302 ]] || fail "login" "POST /wp-login.php answered $code, not a redirect: $(why "$work/login")"
grep -q 'wordpress_logged_in_' "$jar" || fail "login" "no wordpress_logged_in_ cookie was set"
ok "login"

# --- 5. dashboard, REST nonce -----------------------------------------------------------------------
code=$(req "$work/dash" /wp-admin/)
[[ $code == 200 ]] || fail "dashboard" "GET /wp-admin/ answered $code: $(why "$work/dash")"
grep -q '<h1>Dashboard</h1>' "$work/dash" || fail "dashboard" "no Dashboard heading: $(why "$work/dash")"
nonce_of() { sed -n 's/.*wpApiSettings = {[^}]*"nonce":"\([0-9a-f]*\)".*/\1/p' "$1" | head -n1; }
nonce=$(nonce_of "$work/dash")
nonce_from=dashboard
if [[ -z $nonce ]]; then
    # The dashboard enqueues wp-api-fetch only with some widgets; the editor always does.
    code=$(req "$work/edit" /wp-admin/post-new.php)
    [[ $code == 200 ]] || fail "REST nonce" "GET /wp-admin/post-new.php answered $code: $(why "$work/edit")"
    nonce=$(nonce_of "$work/edit")
    nonce_from=post-new.php
fi
[[ -n $nonce ]] || fail "REST nonce" "no wpApiSettings nonce in /wp-admin/ nor /wp-admin/post-new.php"
ok "dashboard (REST nonce from $nonce_from)"

# --- 6. pretty permalinks (the REST API at /wp-json/ needs them) -------------------------------------
code=$(req "$work/perm0" /wp-admin/options-permalink.php)
[[ $code == 200 ]] || fail "permalinks" "GET /wp-admin/options-permalink.php answered $code: $(why "$work/perm0")"
wpnonce=$(sed -n 's/.*name="_wpnonce" value="\([0-9a-f]*\)".*/\1/p' "$work/perm0" | head -n1)
[[ -n $wpnonce ]] || fail "permalinks" "no _wpnonce in the permalink settings form"
code=$(req "$work/perm" /wp-admin/options-permalink.php \
    --data-urlencode "_wpnonce=$wpnonce" --data-urlencode "_wp_http_referer=/wp-admin/options-permalink.php" \
    --data-urlencode "selection=/%postname%/" --data-urlencode "permalink_structure=/%postname%/" \
    --data-urlencode "category_base=" --data-urlencode "tag_base=" --data-urlencode "submit=Save Changes")
[[ $code == 302 ]] || fail "permalinks" "POST /wp-admin/options-permalink.php answered $code: $(why "$work/perm")"
code=$(req "$work/root" /wp-json/)
if [[ $code != 200 ]] || ! jq -e '.routes["/wp/v2/media"]' "$work/root" >/dev/null 2>&1; then
    fail "permalinks" "GET /wp-json/ answered $code without the wp/v2 routes: $(why "$work/root")"
fi
ok "pretty permalinks, /wp-json/ answers"

# --- 7. media upload over REST -----------------------------------------------------------------------
# A 320x240 PNG (gradient), made here: GD decodes it and writes the thumbnail sizes.
python3 - "$work/flow-test.png" <<'PY'
import struct, sys, zlib
w, h = 320, 240
raw = b"".join(b"\0" + b"".join(bytes((x * 255 // w, y * 255 // h, 128)) for x in range(w))
              for y in range(h))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
code=$(req "$work/upload" /wp-json/wp/v2/media -X POST -H "X-WP-Nonce: $nonce" \
    -H 'Content-Type: image/png' -H 'Content-Disposition: attachment; filename=flow-test.png' \
    --data-binary "@$work/flow-test.png")
[[ $code == 201 ]] || fail "media upload" "POST /wp-json/wp/v2/media answered $code: $(why "$work/upload")"
media_id=$(jq -r '.id // empty' "$work/upload")
media_url=$(jq -r '.source_url // empty' "$work/upload")
[[ -n $media_id && -n $media_url ]] || fail "media upload" "no id/source_url in the answer: $(why "$work/upload")"
sizes=$(jq -r '.media_details.sizes // {} | keys | join(",")' "$work/upload")
ok "media upload (id $media_id, sizes: ${sizes:-none})"

# --- 8. media read-back ---------------------------------------------------------------------------
code=$(req "$work/list" /wp-json/wp/v2/media -H "X-WP-Nonce: $nonce")
[[ $code == 200 ]] || fail "media list" "GET /wp-json/wp/v2/media answered $code: $(why "$work/list")"
jq -e --argjson id "$media_id" 'map(.id) | index($id) != null' "$work/list" >/dev/null ||
    fail "media list" "media $media_id is not in the list: $(why "$work/list")"
ok "media list"
path=${media_url#*://*/}
code=$(req "$work/file" "/$path")
[[ $code == 200 ]] || fail "uploaded file" "GET /$path answered $code: $(why "$work/file")"
[[ $(sha256sum <"$work/file") == $(sha256sum <"$work/flow-test.png") ]] ||
    fail "uploaded file" "/$path differs from the uploaded image"
ok "uploaded file /$path"

# --- 9. post over REST ------------------------------------------------------------------------------
post_title="Hello from sgrun $RANDOM"
code=$(req "$work/post" /wp-json/wp/v2/posts -X POST -H "X-WP-Nonce: $nonce" -H 'Content-Type: application/json' \
    --data "$(jq -cn --arg t "$post_title" --argjson m "$media_id" \
        '{title: $t, status: "publish", featured_media: $m,
          content: "<!-- wp:paragraph --><p>Posted through the REST API.</p><!-- /wp:paragraph -->"}')")
[[ $code == 201 ]] || fail "create post" "POST /wp-json/wp/v2/posts answered $code: $(why "$work/post")"
post_link=$(jq -r '.link // empty' "$work/post")
[[ -n $post_link ]] || fail "create post" "no link in the answer: $(why "$work/post")"
code=$(req "$work/postpage" "/${post_link#*://*/}")
[[ $code == 200 ]] || fail "create post" "GET $post_link answered $code: $(why "$work/postpage")"
grep -qF "$post_title" "$work/postpage" || fail "create post" "the post title is not on $post_link"
ok "create post ($post_link)"

# --- 10. wp-cron ------------------------------------------------------------------------------------------
code=$(req "$work/cron" /wp-cron.php)
[[ $code == 200 ]] || fail "wp-cron" "GET /wp-cron.php answered $code: $(why "$work/cron")"
ok "wp-cron"

echo "# flow passed in $(($(now_ms) - flow_start)) ms"
