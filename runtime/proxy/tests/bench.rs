//! Rough figures for docs/proxy.md, not run by default (`cargo test -p sgrun-proxy --test bench
//! -- --ignored --nocapture --test-threads=1`):
//! - how long `reload` takes with 50 routes, validation and `nginx -t` included, and with a
//!   route nginx refuses (found by line number, or by bisection);
//! - requests/s of a small static answer, straight to a site's unix socket and through the
//!   proxy, with the same client (keep-alive connections, one request at a time on each).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sgrun_proxy::Route;

fn routes(env: &Env, n: usize, tag: &str) -> Vec<Route> {
    let sock = env.socket("shared");
    (0..n)
        .map(|i| Route::new(format!("site{i}-{tag}.example.com"), &sock, "bench/site"))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore]
fn bench_reload_50_routes() {
    let mut env = Env::new();
    let (a, b) = (routes(&env, 50, "a"), routes(&env, 50, "b"));
    let t = Instant::now();
    env.proxy.start(&a).unwrap();
    println!(
        "start, 50 routes: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    for i in 0..20 {
        let list = if i % 2 == 0 { &b } else { &a };
        let t = Instant::now();
        let applied = env.proxy.reload(list).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(applied.routes.len(), 50);
    }
    println!(
        "reload, 50 routes (validate, nginx -t, rename+fsync, HUP, new worker up, old ones closed): median {:.1} ms, min {:.1}, max {:.1} over {}",
        median(times.clone()),
        times.iter().cloned().fold(f64::MAX, f64::min),
        times.iter().cloned().fold(0.0, f64::max),
        times.len()
    );
    // Where the time goes: `nginx -t` of the live 50-route file alone ...
    let conf = env.proxy.config_path().to_str().unwrap().to_string();
    let prefix = format!("{}/", env.proxy.config().state_dir.display());
    let mut checks = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (ok, err) = nginx(&["-t", "-q", "-c", &conf, "-p", &prefix, "-e", "stderr"]);
        checks.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(ok, "{err}");
    }
    // (nginx -t on the live file empties the live pid file: put it back for the guard.)
    let pid = env.proxy.status().unwrap().pid.unwrap();
    fs::write(env.proxy.pid_file(), format!("{pid}\n")).unwrap();
    println!(
        "nginx -t of the 50-route file: median {:.1} ms",
        median(checks)
    );
    // ... and the validation alone (no nginx), for scale.
    let t = Instant::now();
    for _ in 0..1000 {
        for r in &a {
            sgrun_proxy::validate_route(r).unwrap();
        }
    }
    println!(
        "validation of 50 routes: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6 / 1000.0
    );
    for ignore_lines in [false, true] {
        env.proxy.test_hooks().broken_domains = vec!["site17-a.example.com".into()];
        env.proxy.test_hooks().ignore_line_numbers = ignore_lines;
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let applied = env.proxy.reload(&a).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(applied.rejected.len(), 1);
        }
        println!(
            "reload, 50 routes, one refused by nginx ({}): median {:.1} ms",
            if ignore_lines {
                "found by bisection"
            } else {
                "found by its line"
            },
            median(times)
        );
    }
}

/// A site stand-in that is itself nginx: a static answer on a unix socket.
fn upstream_nginx(dir: &Path) -> (NginxGuard, std::path::PathBuf) {
    mkdir_searchable(dir);
    mkdir_searchable(&dir.join("tmp"));
    let sock = dir.join("site.sock");
    let conf = dir.join("site.conf");
    let d = dir.display();
    fs::write(
        &conf,
        format!(
            "daemon on; worker_processes 1; pid {d}/site.pid; error_log {d}/site-error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; client_body_temp_path {d}/tmp/cb; proxy_temp_path {d}/tmp/p;\n\
             fastcgi_temp_path {d}/tmp/f; uwsgi_temp_path {d}/tmp/u; scgi_temp_path {d}/tmp/s;\n\
             server {{ listen unix:{d}/site.sock; location / {{ return 200 \"hello from the site\\n\"; }} }} }}\n"
        ),
    )
    .unwrap();
    let guard = NginxGuard {
        pid_file: dir.join("site.pid"),
        conf: conf.clone(),
    };
    let prefix = format!("{d}/");
    let (ok, err) = nginx(&["-c", conf.to_str().unwrap(), "-p", &prefix, "-e", "stderr"]);
    assert!(ok, "{err}");
    // The sites' nginx makes its socket 0666 so that the proxy's workers (www-data) connect.
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o666)).unwrap();
    (guard, sock)
}

type Connect = dyn Fn() -> Box<dyn ReadWrite + Send> + Send + Sync;

/// One keep-alive connection sending GETs one after another until `stop`; counts replies.
/// nginx closes a client connection after 1000 requests (keepalive_requests): reconnect then.
fn client(connect: &Connect, host: &str, stop: &AtomicBool, done: &AtomicU64) {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut buf = vec![0u8; 4096];
    let mut s = connect();
    while !stop.load(Ordering::Relaxed) {
        s.write_all(req.as_bytes()).unwrap();
        let mut have = 0;
        let close = loop {
            let n = s.read(&mut buf[have..]).unwrap();
            assert!(n > 0, "connection closed mid-reply");
            have += n;
            let text = &buf[..have];
            if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&text[..end])
                    .unwrap()
                    .to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if have >= end + 4 + len {
                    assert!(head.starts_with("http/1.1 200"), "{head}");
                    break head.contains("connection: close");
                }
            }
        };
        done.fetch_add(1, Ordering::Relaxed);
        if close {
            s = connect();
        }
    }
}

fn run_load(conns: usize, secs: u64, connect: Arc<Connect>) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..conns {
        let (stop, done, connect) = (stop.clone(), done.clone(), connect.clone());
        threads.push(std::thread::spawn(move || {
            client(&*connect, "bench.example.com", &stop, &done)
        }));
    }
    // Warm up, then count.
    std::thread::sleep(Duration::from_millis(500));
    let start_count = done.load(Ordering::Relaxed);
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let n = done.load(Ordering::Relaxed) - start_count;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    rate
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
#[ignore]
fn bench_requests_per_second() {
    let env = Env::new();
    let (_site, sock) = upstream_nginx(&env.dir.path().join("site"));
    env.proxy
        .start(&[Route::new("bench.example.com", &sock, "bench/site")])
        .unwrap();
    let port = env.port;
    for conns in [1, 4, 16] {
        let sock = sock.clone();
        let direct = run_load(
            conns,
            5,
            Arc::new(move || {
                Box::new(UnixStream::connect(&sock).unwrap()) as Box<dyn ReadWrite + Send>
            }),
        );
        let proxied = run_load(
            conns,
            5,
            Arc::new(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_nodelay(true).unwrap();
                Box::new(s) as Box<dyn ReadWrite + Send>
            }),
        );
        println!(
            "{conns:>2} keep-alive connections: direct to the unix socket {direct:.0} req/s, through the proxy {proxied:.0} req/s ({:.2}x)",
            proxied / direct
        );
    }
}
