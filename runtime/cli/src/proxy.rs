//! `sgrun proxy start | reload | stop | status`: the front proxy (sgrun-proxy, Debian's
//! nginx) with routes generated from the site list. The site commands call [`sync`] so that a
//! running proxy always routes the sites that exist.

use std::net::SocketAddr;

use anyhow::{bail, Result};
use clap::Subcommand;
use sgrun_proxy::{Applied, Proxy, ProxyConfig, Route};
use sgrun_sites::SiteRef;

use crate::site::Ctx;

const PROXY_HELP: &str = "\
The front proxy is Debian's nginx (/usr/sbin/nginx, package nginx-light), run by sgrun with a
configuration it generates from the site list: one server block per site's domain, proxying
to the site's unix socket (<root>/.sites/TENANT/SITE/http/http.sock). A request for an unknown
Host gets 404; a site that is stopped answers 503 \"not running\".

Every configuration is checked with `nginx -t` before it replaces the live one; a site whose
block nginx refuses is left out (and named), never the whole proxy. `sgrun site create|start|
rm` reload a running proxy by themselves.

Files:
  <state-dir>/proxy/nginx.conf           the live configuration
  <state-dir>/proxy/logs/access.log      one line per request (host, upstream status)
  <state-dir>/proxy/logs/error.log
  <root>/.proxy/nginx.pid

Examples:
  sgrun proxy start                          127.0.0.1:8080 (and [::1]:8080)
  sgrun proxy start --listen 0.0.0.0:80 --listen [::]:80
  sgrun proxy status --json
  sgrun proxy reload

See docs/proxy.md.";

#[derive(Subcommand, Debug)]
#[command(after_long_help = PROXY_HELP)]
pub enum ProxyCommand {
    /// Start the proxy with a route for every site
    Start {
        /// Address to listen on (several allowed); default 127.0.0.1:8080 and [::1]:8080
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Vec<SocketAddr>,
        #[arg(long)]
        json: bool,
    },
    /// Regenerate the routes from the site list, check them, and reload without dropping
    /// requests
    Reload {
        #[arg(long)]
        json: bool,
    },
    /// Stop the proxy (QUIT: requests in flight finish)
    Stop,
    /// Whether it runs, its pid, addresses and routes
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn proxy(ctx: &Ctx, listen: Vec<SocketAddr>) -> Proxy {
    let mut cfg = ProxyConfig::new(ctx.state_dir.join("proxy"), ctx.root.join(".proxy"));
    // every site's HTTP socket is beneath it: nginx sees it without symlinks (docs/proxy.md)
    cfg.socket_root = Some(sgrun_sites::Layout::new(ctx.state_dir, ctx.root).run);
    if !listen.is_empty() {
        cfg.listen = listen;
    }
    Proxy::new(cfg)
}

/// A route for every site, stopped ones included (they answer "not running").
fn routes(ctx: &Ctx) -> Result<Vec<Route>> {
    let layout = sgrun_sites::Layout::new(ctx.state_dir, ctx.root);
    Ok(layout
        .list()?
        .into_iter()
        .map(|rec| {
            let r: SiteRef = rec.site_ref();
            Route::new(rec.domain.clone(), layout.http_socket(&r), r.to_string())
        })
        .collect())
}

fn report(applied: &Applied, json: bool, what: &str) -> Result<u8> {
    if json {
        println!("{}", serde_json::to_string_pretty(applied)?);
    } else {
        println!("proxy {what}: {} route(s)", applied.routes.len());
        for r in &applied.routes {
            println!("  {:<40} -> {}", r.domain, r.site);
        }
    }
    for (route, why) in &applied.rejected {
        eprintln!(
            "sgrun: proxy: site {} ({}) left out: {why}",
            route.site, route.domain
        );
    }
    Ok(if applied.rejected.is_empty() { 0 } else { 1 })
}

/// The listen addresses of the running proxy, from its live configuration: a reload keeps
/// what `start` was given.
fn running(ctx: &Ctx) -> Result<Option<Proxy>> {
    let st = proxy(ctx, Vec::new()).status()?;
    if !st.running {
        return Ok(None);
    }
    Ok(Some(proxy(ctx, st.listen)))
}

pub fn run(cmd: ProxyCommand, ctx: &Ctx) -> Result<u8> {
    match cmd {
        ProxyCommand::Start { listen, json } => {
            let applied = proxy(ctx, listen).start(&routes(ctx)?)?;
            report(&applied, json, "started")
        }
        ProxyCommand::Reload { json } => {
            let Some(p) = running(ctx)? else {
                bail!("the proxy is not running: `sgrun proxy start`");
            };
            let applied = p.reload(&routes(ctx)?)?;
            report(&applied, json, "reloaded")
        }
        ProxyCommand::Stop => {
            proxy(ctx, Vec::new()).stop()?;
            println!("proxy stopped");
            Ok(0)
        }
        ProxyCommand::Status { json } => {
            let st = proxy(ctx, Vec::new()).status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else if st.running {
                let listen: Vec<String> = st.listen.iter().map(|a| a.to_string()).collect();
                println!(
                    "proxy running: pid {}, {} worker(s), listening on {}",
                    st.pid.unwrap_or(0),
                    st.workers.len(),
                    listen.join(", ")
                );
                for r in &st.routes {
                    println!("  {:<40} -> {}", r.domain, r.site);
                }
                println!(
                    "config {}, access log {}",
                    st.config.display(),
                    st.access_log.display()
                );
            } else {
                println!("proxy not running (`sgrun proxy start`)");
            }
            Ok(0)
        }
    }
}

/// After a change to the site list: a running proxy is reloaded with the new routes. A site
/// nginx refuses is reported and left out; the proxy keeps serving the others.
pub fn sync(ctx: &Ctx) -> Result<()> {
    let Some(p) = running(ctx)? else {
        return Ok(());
    };
    let applied = p.reload(&routes(ctx)?)?;
    for (route, why) in &applied.rejected {
        eprintln!(
            "sgrun: proxy: site {} ({}) left out: {why}",
            route.site, route.domain
        );
    }
    Ok(())
}

/// Where a site can be reached, for people: its URL through the running proxy, else its
/// socket and how to start the proxy.
pub fn where_served(ctx: &Ctx, domain: &str, socket: &std::path::Path) -> String {
    let listen = proxy(ctx, Vec::new())
        .status()
        .ok()
        .filter(|st| st.running)
        .and_then(|st| st.listen.first().copied());
    match listen {
        Some(addr) if addr.port() == 80 => format!("http://{domain}/"),
        Some(addr) => format!("http://{domain}:{}/", addr.port()),
        None => format!(
            "HTTP on {} (`sgrun proxy start` serves http://{domain}:8080/)",
            socket.display()
        ),
    }
}
