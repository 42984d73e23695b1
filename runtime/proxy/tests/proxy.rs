//! The proxy against real nginx (/usr/sbin/nginx, run as root): routing, failure behaviour,
//! validation against hostile routes, and the process life cycle. Each test has its own
//! directories and port; its `Env` guard stops the nginx it started, even on failure.

mod common;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sgrun_proxy::{render_unchecked, Proxy, ProxyConfig, ProxyError, Route};

fn rejected_domains(applied: &sgrun_proxy::Applied) -> Vec<String> {
    applied
        .rejected
        .iter()
        .map(|(r, _)| r.domain.clone())
        .collect()
}

#[test]
fn routes_by_host_to_two_sites() {
    let env = Env::new();
    let (sa, sb) = (env.socket("a"), env.socket("b"));
    let _a = Upstream::start(&sa, "acme/a");
    let _b = Upstream::start(&sb, "acme/b");
    // The longest domain validation allows: nginx must take it too (server name hash bucket).
    let l = "x".repeat(62);
    let long = format!("{l}.{l}.{l}.{}.com", "y".repeat(60));
    assert_eq!(long.len(), 253);
    let routes = vec![
        Route::new("a.example.com", &sa, "acme/a"),
        Route::new("b.example.com", &sb, "acme/b"),
        Route::new(long.clone(), &sb, "acme/b"),
    ];
    let applied = env.proxy.start(&routes).unwrap();
    assert_eq!(applied.routes, routes);
    assert!(applied.rejected.is_empty(), "{:?}", applied.rejected);

    let a = env.get("a.example.com", "/hello?x=1");
    assert_eq!(a.status, 200, "{a:?}");
    assert!(
        a.body.starts_with("site=acme/a host=a.example.com "),
        "{}",
        a.body
    );
    // The headers the sites rely on (WordPress builds its URLs from Host).
    assert!(a.body.contains("xff=127.0.0.1 proto=http"), "{}", a.body);
    assert!(
        a.body.contains("request=GET /hello?x=1 HTTP/1.1"),
        "{}",
        a.body
    );
    let b = env.get("b.example.com", "/");
    assert!(
        b.body.starts_with("site=acme/b host=b.example.com "),
        "{}",
        b.body
    );
    // Host names are case-insensitive; nginx lower-cases them before the lookup.
    let b = env.get("B.Example.COM", "/");
    assert!(b.body.starts_with("site=acme/b "), "{}", b.body);
    let b = env.get(&long, "/");
    assert!(b.body.starts_with("site=acme/b "), "{}", b.body);

    // A POST body bigger than the in-memory buffer goes through the temp path under run_dir,
    // which the workers (www-data) must be able to write.
    let body = "x".repeat(300_000);
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let up = request(env.port, &raw).unwrap();
    assert_eq!(up.status, 200, "{up:?}");
    assert!(up.body.contains("body=300000"), "{}", up.body);

    let status = env.proxy.status().unwrap();
    assert!(status.running);
    assert_eq!(status.pid, env.master_pid());
    assert_eq!(status.workers.len(), 1, "worker_processes 1");
    assert_eq!(status.routes, routes);
    assert_eq!(status.listen, env.proxy.config().listen);
    assert_eq!(status.config, env.proxy.config_path());

    // One access log line per request, with the host and the site's status.
    let log = fs::read_to_string(env.proxy.access_log()).unwrap();
    assert!(
        log.lines().any(
            |l| l.contains("\"a.example.com\" \"GET /hello?x=1 HTTP/1.1\" 200")
                && l.contains("upstream=200")
        ),
        "{log}"
    );
    // Nothing of this proxy under the system nginx's paths.
    let conf = fs::read_to_string(env.proxy.config_path()).unwrap();
    assert!(!conf.contains("/var/lib/nginx") && !conf.contains("/var/log/nginx"));
}

#[test]
fn unknown_host_is_404_in_plain_text() {
    let env = Env::new();
    let s = env.socket("a");
    let _a = Upstream::start(&s, "t/a");
    env.proxy
        .start(&[Route::new("a.example.com", &s, "t/a")])
        .unwrap();
    let r = env.get("nobody.example.org", "/");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("'nobody.example.org'"), "{}", r.body);
    // A .html URI: the reply naming the host is still text/plain, never HTML.
    let r = env.get("nobody.example.org", "/page.html");
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("Content-Type"), Some("text/plain"), "{r:?}");
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    // Markup in the Host header: nginx refuses the request itself (400) before any server.
    let r = env.get("<b>x</b>.example.org", "/page.html");
    assert_eq!(r.status, 400, "{r:?}");
    assert!(!r.body.contains("<b>x"), "{}", r.body);
    // No Host at all (HTTP/1.0) lands on the default server too.
    let r = request(env.port, "GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(r.status, 404, "{r:?}");

    // The check above can fail: the same configuration without the empty `types` map serves
    // the reflected Host as text/html for a .html URI. (Run on a copy, on another port.)
    let conf = fs::read_to_string(env.proxy.config_path()).unwrap();
    let port = free_port();
    let dir = env.dir.path().join("weak");
    mkdir_searchable(&dir);
    let weak = conf
        .replace("        types { }\n", "")
        .replace(
            &format!("127.0.0.1:{}", env.port),
            &format!("127.0.0.1:{port}"),
        )
        .replace(
            &env.proxy.pid_file().display().to_string(),
            &dir.join("nginx.pid").display().to_string(),
        );
    assert_ne!(weak, conf);
    let weak_conf = dir.join("nginx.conf");
    fs::write(&weak_conf, weak).unwrap();
    let _guard = NginxGuard {
        pid_file: dir.join("nginx.pid"),
        conf: weak_conf.clone(),
    };
    let prefix = format!("{}/", dir.display());
    let (ok, err) = nginx(&[
        "-c",
        weak_conf.to_str().unwrap(),
        "-p",
        &prefix,
        "-e",
        "stderr",
    ]);
    assert!(ok, "{err}");
    wait_until(|| get(port, "x.org", "/").is_ok());
    let r = get(port, "nobody.example.org", "/page.html").unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("Content-Type"), Some("text/html"), "{r:?}");
}

fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("condition not met within 5 s");
}

#[test]
fn stopped_site_says_not_running_and_comes_back_without_reload() {
    let env = Env::new();
    let (sa, sb) = (env.socket("a"), env.socket("b"));
    let _a = Upstream::start(&sa, "t/a");
    // b's socket does not exist: the site is stopped. Not a reason to reject the route.
    let applied = env
        .proxy
        .start(&[
            Route::new("a.example.com", &sa, "t/a"),
            Route::new("b.example.com", &sb, "t/b"),
        ])
        .unwrap();
    assert_eq!(applied.routes.len(), 2, "{:?}", applied.rejected);
    let r = env.get("b.example.com", "/");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.body, "site b.example.com is not running\n");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Retry-After"), Some("30"));
    // The access log still shows what the site did (nothing: 502 from nginx's connect).
    let log = fs::read_to_string(env.proxy.access_log()).unwrap();
    assert!(
        log.lines().any(|l| l.contains("\"b.example.com\"")
            && l.contains(" 503 ")
            && l.contains("upstream=502")),
        "{log}"
    );
    // The site starts: served at once, no reload needed.
    {
        let _b = Upstream::start(&sb, "t/b");
        let r = env.get("b.example.com", "/");
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.starts_with("site=t/b "));
    }
    // Stopped again, but a stale socket file left behind (nobody listening): same answer.
    let stale = std::os::unix::net::UnixListener::bind(&sb).unwrap();
    drop(stale);
    assert!(sb.exists());
    let r = env.get("b.example.com", "/");
    assert_eq!(r.status, 503, "{r:?}");
    // a was never disturbed.
    assert_eq!(env.get("a.example.com", "/").status, 200);
}

/// Hostile domains, socket paths and site names: each refused by validation with a reason
/// that names it (escaped), the good routes still served, nothing of them in nginx.conf.
#[test]
fn hostile_routes_are_refused_and_the_others_serve() {
    let env = Env::new();
    let (sa, sb) = (env.socket("a"), env.socket("b"));
    let _a = Upstream::start(&sa, "t/a");
    let _b = Upstream::start(&sb, "t/b");
    let pwn = "pwned.example.com; return 200 pwned";
    let hostile: Vec<(Route, &str)> = vec![
        (Route::new(pwn, &sb, "t/x"), "contains ';'"),
        (Route::new("x.example.com;}", &sb, "t/x"), "contains ';'"),
        (
            Route::new("x.example.com\n  location /p { return 200 pwned; }", &sb, "t/x"),
            "contains '\\n'",
        ),
        (Route::new("\"x.example.com\"", &sb, "t/x"), "contains '\"'"),
        (Route::new("x.example.com'", &sb, "t/x"), "contains '\\''"),
        (Route::new("$host.example.com", &sb, "t/x"), "contains '$'"),
        (Route::new("x.example.com#", &sb, "t/x"), "contains '#'"),
        (Route::new("*.example.com", &sb, "t/x"), "wildcard"),
        (Route::new("X.example.com", &sb, "t/x"), "upper-case"),
        (Route::new("localhost", &sb, "t/x"), "single label"),
        (Route::new("example.com.", &sb, "t/x"), "trailing dot"),
        (
            Route::new(
                "s1.example.com",
                "/tmp/x.sock; } server { listen 1; return 200 pwned; } upstream u { server unix:/tmp/y.sock",
                "t/x",
            ),
            "contains ';'",
        ),
        (Route::new("s2.example.com", "/tmp/x.sock\nreturn 200 pwned;", "t/x"), "contains '\\n'"),
        (Route::new("s3.example.com", "/tmp/a b.sock", "t/x"), "contains ' '"),
        (Route::new("s4.example.com", "/tmp/x.sock:/pwn", "t/x"), "contains ':'"),
        (Route::new("s5.example.com", "/tmp/$x.sock", "t/x"), "contains '$'"),
        (Route::new("s6.example.com", "/tmp/\"x\".sock", "t/x"), "contains '\"'"),
        (Route::new("s7.example.com", "/tmp/{x}.sock", "t/x"), "contains '{'"),
        (Route::new("s8.example.com", "run/x.sock", "t/x"), "not absolute"),
        (Route::new("s9.example.com", "/tmp/../etc/x.sock", "t/x"), "'..'"),
        (
            Route::new("s10.example.com", format!("/{}", "a".repeat(107)), "t/x"),
            "108 bytes",
        ),
        (Route::new("s11.example.com", &sb, "t/x\nreturn 200 pwned;"), "contains '\\n'"),
        (Route::new("s12.example.com", &sb, "t/x }"), "contains ' '"),
        // Same domain as the first good route: the later entry goes, naming both sites.
        (Route::new("a.example.com", &sb, "other/site"), "already routed to site \"t/a\""),
    ];
    let mut routes = vec![Route::new("a.example.com", &sa, "t/a")];
    routes.extend(hostile.iter().map(|(r, _)| r.clone()));
    routes.push(Route::new("b.example.com", &sb, "t/b"));

    let applied = env.proxy.start(&routes).unwrap();
    let good: Vec<&str> = applied.routes.iter().map(|r| r.domain.as_str()).collect();
    assert_eq!(good, ["a.example.com", "b.example.com"]);
    assert_eq!(applied.rejected.len(), hostile.len());
    for ((route, why), (expected, needle)) in applied.rejected.iter().zip(&hostile) {
        assert_eq!(route, expected);
        assert!(why.contains(needle), "{route:?}: {why:?} lacks {needle:?}");
        // Messages name the input escaped: one line, no raw control characters.
        assert!(!why.contains('\n'), "{why:?}");
        assert!(
            !why.starts_with("nginx -t"),
            "validation, not nginx, must refuse: {why}"
        );
    }
    let dup = &applied.rejected.last().unwrap().1;
    assert!(dup.contains("other/site") && dup.contains("t/a"), "{dup}");

    let conf = fs::read_to_string(env.proxy.config_path()).unwrap();
    assert!(!conf.contains("pwned"), "{conf}");
    assert_eq!(env.get("a.example.com", "/").status, 200);
    assert!(env.get("b.example.com", "/").body.starts_with("site=t/b "));
    let r = env.get("pwned.example.com", "/");
    assert_eq!(r.status, 404);
    assert!(r.body.starts_with("no site is served here"), "{}", r.body);
    // The same validation is public for the site commands.
    assert!(matches!(
        sgrun_proxy::validate_domain("a.com;", "t/s"),
        Err(ProxyError::InvalidDomain { .. })
    ));
}

/// The proof that the test above can fail: without validation, a socket path carries a whole
/// server block past `nginx -t`, and that block takes over another tenant's domain.
#[test]
fn without_validation_a_socket_path_injects_a_server_block() {
    let env = Env::new();
    let victim_sock = env.socket("victim");
    let _victim = Upstream::start(&victim_sock, "t/victim");
    let port = free_port();
    let hostile = Route::new(
        "attacker.example.com",
        "/x;}server{listen 127.0.0.1:PORT;server_name v.example.com;return 200 pwned;}upstream p{server unix:/y"
            .replace("PORT", &port.to_string()),
        "evil/site",
    );
    // Short enough for a socket path: refused for its characters, not its length.
    assert!(hostile.socket.as_os_str().len() <= 107);
    let victim = Route::new("v.example.com", &victim_sock, "t/victim");
    let routes = [hostile.clone(), victim.clone()];

    // Validation on: the route is refused, the victim keeps its domain.
    let applied = env.proxy.start(&routes).unwrap();
    assert_eq!(applied.routes, std::slice::from_ref(&victim));
    assert!(
        applied.rejected[0].1.contains("contains ';'"),
        "{:?}",
        applied.rejected
    );
    let r = env.get("v.example.com", "/");
    assert!(r.body.starts_with("site=t/victim "), "{r:?}");

    // Validation off: nginx accepts the file, and serves the attacker's answer.
    let dir = env.dir.path().join("unchecked");
    mkdir_searchable(&dir);
    let cfg = ProxyConfig {
        listen: vec![([127, 0, 0, 1], port).into()],
        state_dir: dir.join("state"),
        run_dir: dir.join("run"),
        nginx: PathBuf::from(NGINX),
        socket_root: None,
    };
    for d in [
        &cfg.state_dir,
        &cfg.run_dir,
        &cfg.state_dir.join("logs"),
        &cfg.run_dir.join("tmp"),
    ] {
        mkdir_searchable(d);
    }
    let text = render_unchecked(&cfg, &routes);
    assert!(text.contains("return 200 pwned;"));
    let conf = cfg.state_dir.join("nginx.conf");
    fs::write(&conf, &text).unwrap();
    let _guard = NginxGuard {
        pid_file: cfg.run_dir.join("nginx.pid"),
        conf: conf.clone(),
    };
    let prefix = format!("{}/", cfg.state_dir.display());
    let conf_s = conf.to_str().unwrap();
    let (ok, err) = nginx(&["-t", "-c", conf_s, "-p", &prefix, "-e", "stderr"]);
    assert!(ok, "nginx -t refused the injected file: {err}");
    let (ok, err) = nginx(&["-c", conf_s, "-p", &prefix, "-e", "stderr"]);
    assert!(ok, "{err}");
    wait_until(|| get(port, "v.example.com", "/").is_ok());
    let r = get(port, "v.example.com", "/").unwrap();
    assert_eq!(
        r.body, "pwned",
        "the injected block did not take over: {r:?}"
    );

    // A hostile domain lands in four places of its block (upstream name, server_name,
    // proxy_pass, the "not running" string); unvalidated, nginx's own check is a second
    // barrier there, which is why validation, not nginx, must be the first.
    let text = render_unchecked(
        &cfg,
        &[Route::new(
            "x.example.com; return 200 pwned",
            &victim_sock,
            "t/x",
        )],
    );
    fs::write(&conf, &text).unwrap();
    let (ok, err) = nginx(&["-t", "-c", conf_s, "-p", &prefix, "-e", "stderr"]);
    assert!(!ok, "{err}");
}

/// nginx without sgrun's checks: `render_unchecked` of `routes`, started on a free port in
/// `dir`. Returns the guard that kills it and the port.
fn start_unchecked(dir: &std::path::Path, routes: &[Route]) -> (NginxGuard, u16) {
    let port = free_port();
    mkdir_searchable(dir);
    let cfg = ProxyConfig {
        listen: vec![([127, 0, 0, 1], port).into()],
        state_dir: dir.join("state"),
        run_dir: dir.join("run"),
        nginx: PathBuf::from(NGINX),
        socket_root: None,
    };
    for d in [
        &cfg.state_dir,
        &cfg.run_dir,
        &cfg.state_dir.join("logs"),
        &cfg.run_dir.join("tmp"),
    ] {
        mkdir_searchable(d);
    }
    let conf = cfg.state_dir.join("nginx.conf");
    fs::write(&conf, render_unchecked(&cfg, routes)).unwrap();
    let guard = NginxGuard {
        pid_file: cfg.run_dir.join("nginx.pid"),
        conf: conf.clone(),
    };
    let prefix = format!("{}/", cfg.state_dir.display());
    let (ok, err) = nginx(&["-c", conf.to_str().unwrap(), "-p", &prefix, "-e", "stderr"]);
    assert!(ok, "{err}");
    wait_until(|| get(port, "x.org", "/").is_ok());
    (guard, port)
}

/// A socket path that is a symlink is refused: nginx follows links on connect(2), so a tenant
/// that replaces its http.sock by a link would point the proxy at another socket. Proved both
/// ways: refused by the proxy, and, without the check, the tenant's domain serves the other
/// site.
#[test]
fn a_symlinked_socket_is_refused() {
    let env = Env::new();
    let victim_sock = env.socket("victim");
    let _victim = Upstream::start(&victim_sock, "t/victim");
    let evil_sock = env.socket("evil");
    std::os::unix::fs::symlink(&victim_sock, &evil_sock).unwrap();
    let routes = [
        Route::new("evil.example.com", &evil_sock, "evil/site"),
        Route::new("v.example.com", &victim_sock, "t/victim"),
    ];
    let applied = env.proxy.start(&routes).unwrap();
    assert_eq!(rejected_domains(&applied), ["evil.example.com"]);
    assert!(
        applied.rejected[0].1.contains("is a symbolic link"),
        "{:?}",
        applied.rejected
    );
    assert_eq!(env.get("evil.example.com", "/").status, 404);

    let (_guard, port) = start_unchecked(&env.dir.path().join("unchecked"), &routes);
    let r = get(port, "evil.example.com", "/").unwrap();
    assert!(r.body.starts_with("site=t/victim "), "{r:?}");
}

/// The socket's directory is the tenant's: after the routes were checked it can swap its
/// socket for a symlink to another site's. nginx, in its own mount namespace where the
/// socket root is `nosymfollow`, does not follow it (503, "not running"); the weakened twin
/// (no socket root)
/// serves the victim's site, which is the hole this closes.
#[test]
fn a_socket_swapped_for_a_symlink_later_is_not_followed() {
    for nosymfollow in [true, false] {
        let env = if nosymfollow {
            Env::new()
        } else {
            Env::following_symlinks()
        };
        let victim_sock = env.socket("victim");
        let _victim = Upstream::start(&victim_sock, "t/victim");
        let evil_sock = env.socket("evil");
        let evil = Upstream::start(&evil_sock, "evil/site");
        let routes = [
            Route::new("evil.example.com", &evil_sock, "evil/site"),
            Route::new("v.example.com", &victim_sock, "t/victim"),
        ];
        let applied = env.proxy.start(&routes).unwrap();
        assert!(applied.rejected.is_empty(), "{:?}", applied.rejected);
        let r = env.get("evil.example.com", "/");
        assert!(r.body.starts_with("site=evil/site "), "{r:?}");
        // the swap, as the tenant's root inside its site could do it
        drop(evil);
        let _ = fs::remove_file(&evil_sock);
        std::os::unix::fs::symlink(&victim_sock, &evil_sock).unwrap();
        let r = env.get("evil.example.com", "/");
        if nosymfollow {
            // connect(2) fails (ELOOP): the proxy's answer for a site that is down
            assert_eq!(r.status, 503, "{r:?}");
            assert!(r.body.contains("is not running"), "{r:?}");
            // the victim itself still serves, through its real path
            let v = env.get("v.example.com", "/");
            assert!(v.body.starts_with("site=t/victim "), "{v:?}");
        } else {
            assert!(r.body.starts_with("site=t/victim "), "weakened: {r:?}");
        }
        // the host's own view is untouched: the symlink resolves here
        assert!(fs::metadata(&evil_sock).is_ok());
    }
}

/// With an IPv6 loopback (as here), the default listen list has [::1] too and nginx serves
/// on it.
#[test]
fn listens_on_ipv6_loopback_when_there_is_one() {
    let defaults = ProxyConfig::default_listen(8080);
    assert_eq!(defaults[0], "127.0.0.1:8080".parse().unwrap());
    assert_eq!(defaults.len() == 2, sgrun_proxy::ipv6_loopback_available());
    if !sgrun_proxy::ipv6_loopback_available() {
        eprintln!("no IPv6 loopback here: only the IPv4 default was checked");
        return;
    }
    let mut env = Env::new();
    let mut cfg = env.proxy.config().clone();
    cfg.listen = ProxyConfig::default_listen(env.port);
    env.proxy = Proxy::new(cfg);
    let s = env.socket("a");
    let _a = Upstream::start(&s, "t/a");
    env.proxy
        .start(&[Route::new("a.example.com", &s, "t/a")])
        .unwrap();
    let mut c = std::net::TcpStream::connect(("::1", env.port)).unwrap();
    use std::io::{Read, Write};
    c.write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("site=t/a host=a.example.com xff=::1 "),
        "{reply}"
    );
    assert_eq!(env.get("a.example.com", "/").status, 200);
}

/// A route that passes validation but that nginx refuses is dropped with nginx's message; the
/// others are served. The test hook writes an unknown directive into one route's block.
#[test]
fn a_route_nginx_refuses_is_dropped_and_the_others_serve() {
    let mut env = Env::new();
    let (sa, sb, sc) = (env.socket("a"), env.socket("b"), env.socket("c"));
    let _a = Upstream::start(&sa, "t/a");
    let _b = Upstream::start(&sb, "t/b");
    let _c = Upstream::start(&sc, "t/c");
    env.proxy.test_hooks().broken_domains = vec!["b.example.com".into()];
    let routes = [
        Route::new("a.example.com", &sa, "t/a"),
        Route::new("b.example.com", &sb, "t/b"),
        Route::new("c.example.com", &sc, "t/c"),
    ];
    let applied = env.proxy.start(&routes).unwrap();
    assert_eq!(rejected_domains(&applied), ["b.example.com"]);
    let why = &applied.rejected[0].1;
    assert!(
        why.starts_with("nginx -t refuses this site's server block: [emerg] unknown directive \"sgrun_test_invalid_directive\""),
        "{why}"
    );
    assert_eq!(env.get("a.example.com", "/").status, 200);
    assert_eq!(env.get("b.example.com", "/").status, 404);
    assert_eq!(env.get("c.example.com", "/").status, 200);
    let conf = fs::read_to_string(env.proxy.config_path()).unwrap();
    assert!(!conf.contains("sgrun_test_invalid_directive"));

    // Without line numbers to go by, the bisection finds the culprits (two of nine here).
    env.proxy.test_hooks().ignore_line_numbers = true;
    env.proxy.test_hooks().broken_domains = vec!["s3.example.com".into(), "s7.example.com".into()];
    let routes: Vec<Route> = (0..9)
        .map(|i| Route::new(format!("s{i}.example.com"), &sa, "t/a"))
        .collect();
    let applied = env.proxy.reload(&routes).unwrap();
    assert_eq!(
        rejected_domains(&applied),
        ["s3.example.com", "s7.example.com"]
    );
    assert_eq!(applied.routes.len(), 7);
    assert_eq!(env.get("s8.example.com", "/").status, 200);
    assert_eq!(env.get("s3.example.com", "/").status, 404);
    assert_eq!(
        env.get("a.example.com", "/").status,
        404,
        "a is no longer in the list"
    );
}

#[test]
fn reload_adds_and_removes_a_site_without_dropping_requests() {
    let env = Env::new();
    let (sa, sb) = (env.socket("a"), env.socket("b"));
    let _a = Upstream::start(&sa, "t/a");
    let _b = Upstream::start(&sb, "t/b");
    let a = Route::new("a.example.com", &sa, "t/a");
    let b = Route::new("b.example.com", &sb, "t/b");
    env.proxy.start(std::slice::from_ref(&a)).unwrap();
    let master = env.master_pid().unwrap();
    assert_eq!(env.get("b.example.com", "/").status, 404);

    // Requests to a, back to back, on new connections, all through both reloads.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, port) = (stop.clone(), ok.clone(), failed.clone(), env.port);
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match get(port, "a.example.com", "/") {
                    Ok(r) if r.status == 200 && r.body.starts_with("site=t/a ") => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        errors.push(format!("{other:?}"));
                    }
                }
            }
            errors
        })
    };
    wait_until(|| ok.load(Ordering::SeqCst) > 20);
    let applied = env.proxy.reload(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(applied.routes.len(), 2);
    assert!(env.get("b.example.com", "/").body.starts_with("site=t/b "));
    let before = ok.load(Ordering::SeqCst);
    wait_until(|| ok.load(Ordering::SeqCst) > before + 20);
    env.proxy.reload(std::slice::from_ref(&a)).unwrap();
    assert_eq!(env.get("b.example.com", "/").status, 404);
    let before = ok.load(Ordering::SeqCst);
    wait_until(|| ok.load(Ordering::SeqCst) > before + 20);
    stop.store(true, Ordering::SeqCst);
    let errors = load.join().unwrap();
    assert!(
        errors.is_empty(),
        "requests failed across reload: {errors:?}"
    );
    assert!(ok.load(Ordering::SeqCst) > 60);
    // Same master; its configuration, as status reads it back, is the last one applied.
    assert_eq!(env.master_pid(), Some(master));
    let status = env.proxy.status().unwrap();
    assert_eq!(status.routes, [a]);
}

#[test]
fn stop_leaves_no_process_or_pid_file() {
    let env = Env::new();
    let s = env.socket("a");
    let _a = Upstream::start(&s, "t/a");
    env.proxy
        .start(&[Route::new("a.example.com", &s, "t/a")])
        .unwrap();
    let master = env.master_pid().unwrap();
    let workers = children(master);
    assert_eq!(workers.len(), 1);
    assert_eq!(env.get("a.example.com", "/").status, 200);
    env.proxy.stop().unwrap();
    assert!(!env.proxy.pid_file().exists());
    assert!(!alive(master));
    for w in workers {
        assert!(!alive(w), "worker {w} outlived stop");
    }
    assert!(nginx_masters_for(env.proxy.config_path()).is_empty());
    // The port is free again.
    std::net::TcpListener::bind(("127.0.0.1", env.port)).unwrap();
    let status = env.proxy.status().unwrap();
    assert!(!status.running && status.pid.is_none());
    // Stopping what does not run is not an error.
    env.proxy.stop().unwrap();
}

#[test]
fn start_twice_is_refused_naming_the_pid() {
    let env = Env::new();
    let s = env.socket("a");
    let _a = Upstream::start(&s, "t/a");
    let routes = [Route::new("a.example.com", &s, "t/a")];
    env.proxy.start(&routes).unwrap();
    let pid = env.master_pid().unwrap();
    let conf_before = fs::read(env.proxy.config_path()).unwrap();
    let err = env.proxy.start(&[]).unwrap_err();
    assert!(
        matches!(err, ProxyError::AlreadyRunning { pid: p, .. } if p == pid),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("pid {pid}")) && msg.contains("sgrun proxy reload"),
        "{msg}"
    );
    // The refused start changed nothing.
    assert_eq!(fs::read(env.proxy.config_path()).unwrap(), conf_before);
    assert_eq!(env.get("a.example.com", "/").status, 200);

    // Also when the pid file is lost: the master is found by its title.
    fs::remove_file(env.proxy.pid_file()).unwrap();
    let err = env.proxy.start(&routes).unwrap_err();
    assert!(
        matches!(err, ProxyError::AlreadyRunning { pid: p, .. } if p == pid),
        "{err}"
    );
    env.proxy.stop().unwrap();
    assert!(!alive(pid));
}

#[test]
fn port_in_use_fails_with_nginx_message_and_leaves_nothing() {
    let env = Env::new();
    let _taken = std::net::TcpListener::bind(("127.0.0.1", env.port)).unwrap();
    let s = env.socket("a");
    let err = env
        .proxy
        .start(&[Route::new("a.example.com", &s, "t/a")])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProxyError::StartFailed { .. }), "{msg}");
    assert!(
        msg.contains(&format!(
            "bind() to 127.0.0.1:{} failed (98: Address already in use)",
            env.port
        )),
        "{msg}"
    );
    assert!(!env.proxy.pid_file().exists());
    assert!(nginx_masters_for(env.proxy.config_path()).is_empty());
    assert!(!env.proxy.status().unwrap().running);
}

#[test]
fn reload_or_status_when_not_running() {
    let env = Env::new();
    let err = env.proxy.reload(&[]).unwrap_err();
    assert!(matches!(err, ProxyError::NotRunning { .. }));
    assert!(
        err.to_string()
            .starts_with("not running: sgrun proxy start"),
        "{err}"
    );
    let status = env.proxy.status().unwrap();
    assert!(!status.running && status.routes.is_empty() && status.listen.is_empty());
}

#[test]
fn a_stale_pid_file_does_not_block_start() {
    let env = Env::new();
    let s = env.socket("a");
    let _a = Upstream::start(&s, "t/a");
    fs::create_dir_all(env.proxy.pid_file().parent().unwrap()).unwrap();
    // A live process that is not nginx (this test) and then garbage.
    fs::write(env.proxy.pid_file(), format!("{}\n", std::process::id())).unwrap();
    assert!(!env.proxy.status().unwrap().running);
    env.proxy.stop().unwrap();
    assert!(
        !env.proxy.pid_file().exists(),
        "stop removes a stale pid file"
    );
    fs::write(env.proxy.pid_file(), "garbage").unwrap();
    env.proxy
        .start(&[Route::new("a.example.com", &s, "t/a")])
        .unwrap();
    assert_eq!(env.get("a.example.com", "/").status, 200);
    assert_ne!(env.master_pid(), Some(std::process::id() as i32));
}

/// When even the configuration without any site fails `nginx -t`, reload errors out with
/// nginx's message and the running proxy, its file and its routes are left as they were.
/// The natural case: the error log path is not a file nginx can open.
#[test]
fn a_base_config_nginx_refuses_leaves_the_running_proxy_untouched() {
    let env = Env::new();
    let s = env.socket("a");
    let _a = Upstream::start(&s, "t/a");
    let a = Route::new("a.example.com", &s, "t/a");
    env.proxy.start(std::slice::from_ref(&a)).unwrap();
    let pid = env.master_pid().unwrap();
    let before = fs::read(env.proxy.config_path()).unwrap();
    // The master keeps its open descriptor; a fresh open by `nginx -t` hits a directory.
    let log = env.proxy.error_log().to_path_buf();
    fs::rename(&log, log.with_extension("old")).unwrap();
    fs::create_dir(&log).unwrap();
    let b = Route::new("b.example.com", &s, "t/b");
    let err = env.proxy.reload(&[a.clone(), b]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ProxyError::BaseConfigRejected { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("error.log") && msg.contains("Is a directory"),
        "{msg}"
    );
    assert_eq!(fs::read(env.proxy.config_path()).unwrap(), before);
    assert_eq!(env.master_pid(), Some(pid));
    assert_eq!(env.proxy.status().unwrap().routes, [a]);
    assert_eq!(env.get("a.example.com", "/").status, 200);
    assert_eq!(env.get("b.example.com", "/").status, 404);
    fs::remove_dir(&log).unwrap();
}

/// A file that passes `nginx -t` but that the master cannot load (a new listen address that
/// is taken: `-t` binds nothing). The reload fails with the master's own message, the
/// previous file is put back, and the proxy goes on serving with it.
#[test]
fn a_reload_the_master_cannot_load_keeps_the_previous_config() {
    let env = Env::new();
    let s = env.socket("a");
    let _a = Upstream::start(&s, "t/a");
    let a = Route::new("a.example.com", &s, "t/a");
    env.proxy.start(std::slice::from_ref(&a)).unwrap();
    let before = fs::read(env.proxy.config_path()).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = env.proxy.config().clone();
    cfg.listen.push(taken.local_addr().unwrap());
    let moved = Proxy::new(cfg);
    let b = Route::new("b.example.com", &s, "t/b");
    let t = std::time::Instant::now();
    let err = moved.reload(&[a.clone(), b]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ProxyError::ReloadFailed { .. }), "{msg}");
    assert!(msg.contains("Address already in use"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(fs::read(env.proxy.config_path()).unwrap(), before);
    assert_eq!(env.proxy.status().unwrap().routes, [a]);
    assert_eq!(env.get("a.example.com", "/").status, 200);
    assert_eq!(env.get("b.example.com", "/").status, 404);
}

/// Two sgrun processes reloading at once: the flock makes one wait for the other, and the
/// proxy ends up with one of the two lists, whole.
#[test]
fn concurrent_reloads_are_serialised() {
    let env = Env::new();
    let s = env.socket("a");
    let _a = Upstream::start(&s, "t/a");
    env.proxy.start(&[]).unwrap();
    let lists: Vec<Vec<Route>> = (0..4)
        .map(|t| {
            (0..20)
                .map(|i| Route::new(format!("s{i}.t{t}.example.com"), &s, "t/a"))
                .collect()
        })
        .collect();
    std::thread::scope(|scope| {
        for list in &lists {
            let proxy: Proxy = env.proxy.clone();
            scope.spawn(move || {
                for _ in 0..3 {
                    let applied = proxy.reload(list).unwrap();
                    assert_eq!(&applied.routes, list);
                }
            });
        }
    });
    let status = env.proxy.status().unwrap();
    assert!(lists.contains(&status.routes), "{:?}", status.routes);
    let host = &status.routes[5].domain;
    assert_eq!(env.get(host, "/").status, 200);
}
