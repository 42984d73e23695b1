//! escape-probe: run inside a container under test, it tries each known container-escape
//! vector in a way that detects without destroying, and reports TAP (`ok` = defended).
//! `--peer` turns it into the other tenant the probe tries to reach. `--list` prints the
//! vector ids. See docs/escape-catalogue.md.

mod env;
mod peer;
mod sys;
mod tap;
mod vectors;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        None => probe(),
        Some("--peer") => peer::run(),
        Some("--list") => {
            for (id, _) in vectors::ALL {
                println!("{id}");
            }
            0
        }
        Some(other) => {
            eprintln!("usage: escape-probe [--peer | --list]  (unknown argument {other:?})");
            2
        }
    };
    std::process::exit(code);
}

fn probe() -> i32 {
    let hints = env::Hints::from_env();
    let mut tap = tap::Tap::default();
    tap.comment(&format!(
        "escape-probe: config {}",
        hints.config.as_deref().unwrap_or("(ESCAPE_CONFIG not set)")
    ));
    // SAFETY: getuid/getpid have no preconditions.
    let (uid, pid) = unsafe { (libc::getuid(), libc::getpid()) };
    tap.comment(&format!("uid {uid}, pid {pid}"));
    for (id, vector) in vectors::ALL {
        let outcome = vector(&hints);
        tap.report(id, outcome);
    }
    tap.finish()
}
