//! Test harness: a proxy in its own temp directories on a free port (stopped by a guard even
//! when the test fails), small HTTP servers on unix sockets standing in for the sites, and an
//! HTTP client that sets any Host header.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sgrun_proxy::{Proxy, ProxyConfig};

pub const NGINX: &str = "/usr/sbin/nginx";

/// A port nobody listens on right now (the kernel's pick for :0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// mkdir -p with mode 0755: www-data (the workers) must search every directory above a socket.
pub fn mkdir_searchable(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

/// One proxy in its own directories. Dropping it stops the proxy: `Proxy::stop`, then, should
/// that fail, SIGKILL to the master named in the pid file and to its workers.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub proxy: Proxy,
}

impl Env {
    pub fn new() -> Env {
        Env::build(true)
    }

    /// The weakened twin: no `socket_root`, so nginx follows symlinks to the sockets.
    pub fn following_symlinks() -> Env {
        Env::build(false)
    }

    fn build(nosymfollow: bool) -> Env {
        let dir = tempfile::Builder::new().prefix("sgp").tempdir().unwrap();
        // tempdir makes 0700; the workers must get through to the sockets and temp paths.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let cfg = ProxyConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], port))],
            state_dir: dir.path().join("state"),
            run_dir: dir.path().join("run"),
            nginx: PathBuf::from(NGINX),
            // the sockets of Env::socket, as sgrun's CLI gives <root>/.sites
            socket_root: nosymfollow.then(|| dir.path().join("sites")),
        };
        Env {
            dir,
            port,
            proxy: Proxy::new(cfg),
        }
    }

    /// A socket path for site `name`, its directory made searchable.
    pub fn socket(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join("sites").join(name);
        mkdir_searchable(&self.dir.path().join("sites"));
        mkdir_searchable(&d);
        d.join("http.sock")
    }

    pub fn get(&self, host: &str, path: &str) -> Reply {
        get(self.port, host, path).unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
    }

    pub fn master_pid(&self) -> Option<i32> {
        fs::read_to_string(self.proxy.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let pid = self.master_pid();
        if let Err(e) = self.proxy.stop() {
            eprintln!("guard: stop failed: {e}");
        }
        if let Some(pid) = pid {
            kill_tree(pid, self.proxy.config_path());
        }
    }
}

/// SIGKILL an nginx master of ours (its title names `conf`) and its workers, if still alive.
pub fn kill_tree(pid: i32, conf: &Path) {
    let title = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let title = String::from_utf8_lossy(&title);
    if !title.contains(&conf.display().to_string()) {
        return;
    }
    for p in children(pid).into_iter().chain([pid]) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
}

pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f[1].parse::<i32>().ok() == Some(pid) && f[0] != "Z" {
            out.push(p);
        }
    }
    out
}

/// Every live nginx process whose title names `conf` (the master; workers are found as its
/// children).
pub fn nginx_masters_for(conf: &Path) -> Vec<i32> {
    let conf = conf.display().to_string();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let title = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&title);
        if title.starts_with("nginx: master process") && title.contains(&conf) {
            out.push(p);
        }
    }
    out
}

pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let rest = &s[s.rfind(')').unwrap() + 1..];
            !rest.trim_start().starts_with('Z')
        }
        Err(_) => false,
    }
}

/// A site stand-in: an HTTP/1.1 server on a unix socket (mode 0666, as the sites' nginx makes
/// it) answering every request with one line naming the site and echoing the headers the
/// proxy is meant to set. Keeps connections alive, as nginx's upstream keepalive expects.
pub struct Upstream {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// Open connections, shut down when the site "stops" (as a real site's nginx would close
    /// them; nginx keeps idle connections to the sites alive).
    conns: Arc<Mutex<Vec<UnixStream>>>,
    pub hits: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn start(path: &Path, name: &str) -> Upstream {
        let _ = fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o666)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (s, h, name, c) = (stop.clone(), hits.clone(), name.to_string(), conns.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(clone) = conn.try_clone() {
                    c.lock().unwrap().push(clone);
                }
                let (h, name) = (h.clone(), name.clone());
                std::thread::spawn(move || serve(conn, &name, &h));
            }
        });
        Upstream {
            path: path.to_path_buf(),
            stop,
            conns,
            hits,
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(&self.path);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve(conn: UnixStream, name: &str, hits: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let (mut host, mut xff, mut proto, mut len, mut close) =
            (String::new(), String::new(), String::new(), 0usize, false);
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            let v = v.trim().to_string();
            match k.to_ascii_lowercase().as_str() {
                "host" => host = v,
                "x-forwarded-for" => xff = v,
                "x-forwarded-proto" => proto = v,
                "content-length" => len = v.parse().unwrap_or(0),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let text = format!(
            "site={name} host={host} xff={xff} proto={proto} request={} body={len}\n",
            line.trim_end()
        );
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if w.write_all(reply.as_bytes()).is_err() || close {
            return;
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a new connection (Connection: close, so the body ends with the connection).
pub fn get(port: u16, host: &str, path: &str) -> std::io::Result<Reply> {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

pub fn request(port: u16, raw: &str) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    s.write_all(raw.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Run `nginx` with these arguments and return (success, stderr).
pub fn nginx(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(NGINX)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An nginx started by a test by hand (not through `Proxy`), killed by pid when dropped.
pub struct NginxGuard {
    pub pid_file: PathBuf,
    pub conf: PathBuf,
}

impl Drop for NginxGuard {
    fn drop(&mut self) {
        if let Some(pid) = fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            kill_tree(pid, &self.conf);
        }
        for pid in nginx_masters_for(&self.conf) {
            kill_tree(pid, &self.conf);
        }
    }
}
