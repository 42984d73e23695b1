//! A site's resource limits: what `--memory`, `--cpus` and `--pids` accept, and the floors
//! below which the WordPress stack cannot run (a site that cannot start is refused at create,
//! not discovered at the first start).

use serde::{Deserialize, Serialize};

use crate::error::{Result, SiteError};

/// Measured (docs/sites.md): the stack idles at about 100 MiB (MariaDB with its 16 MiB
/// buffer pool, php-fpm, nginx) and the WordPress install peaks near 150 MiB.
pub const MIN_MEMORY: u64 = 192 << 20;
/// Measured: about 40 tasks at idle (MariaDB's threads, php-fpm's and nginx's workers, the
/// init); the install adds php-fpm children.
pub const MIN_PIDS: u32 = 64;
/// A tenth of a CPU: slower than that, start-up takes minutes.
pub const MIN_CPU_MILLI: u32 = 100;

pub const DEFAULT_MEMORY: u64 = 512 << 20;
pub const DEFAULT_CPU_MILLI: u32 = 1000;
pub const DEFAULT_PIDS: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// memory.limit_in_bytes
    pub memory_bytes: u64,
    /// CPU time in thousandths of a CPU (cfs quota per 100 ms period)
    pub cpu_milli: u32,
    /// pids.max
    pub pids: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY,
            cpu_milli: DEFAULT_CPU_MILLI,
            pids: DEFAULT_PIDS,
        }
    }
}

/// `--memory 512M`: a size in powers of 1024 (as `sgrun tenant create --storage`).
pub fn parse_memory(input: &str) -> Result<u64> {
    sgrun_tenants::validate::parse_size(input).map_err(|e| SiteError::InvalidLimit {
        what: "--memory",
        input: input.into(),
        reason: e.to_string(),
    })
}

/// `--cpus 1.5`: a number of CPUs with at most three decimals.
pub fn parse_cpus(input: &str) -> Result<u32> {
    let bad = |reason: &str| SiteError::InvalidLimit {
        what: "--cpus",
        input: input.into(),
        reason: format!("{reason}; write a number of CPUs such as 1, 0.5 or 2"),
    };
    let (int, frac) = input.split_once('.').unwrap_or((input, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad("it is empty"));
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad("it is not a number"));
    }
    if frac.len() > 3 {
        return Err(bad("more than three decimals"));
    }
    let int: u32 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad("it is too large"))?
    };
    if int > 1024 {
        return Err(bad("more than 1024 CPUs"));
    }
    let frac_milli: u32 = format!("{frac:0<3}").parse().unwrap_or(0);
    Ok(int * 1000 + frac_milli)
}

/// `--pids 256`
pub fn parse_pids(input: &str) -> Result<u32> {
    input.parse::<u32>().map_err(|_| SiteError::InvalidLimit {
        what: "--pids",
        input: input.into(),
        reason: "not a whole number of processes".into(),
    })
}

impl Limits {
    /// Refuses limits under which the stack cannot run.
    pub fn check(&self, site: &str) -> Result<()> {
        let low = |what, value: String, min: String, why| {
            Err(SiteError::LimitTooLow {
                site: site.into(),
                what,
                value,
                min,
                why,
            })
        };
        if self.memory_bytes < MIN_MEMORY {
            return low(
                "--memory",
                sgrun_tenants::validate::format_size(self.memory_bytes),
                sgrun_tenants::validate::format_size(MIN_MEMORY),
                "MariaDB, php-fpm and nginx need about 100 MiB idle and 150 MiB during the install",
            );
        }
        if self.pids < MIN_PIDS {
            return low(
                "--pids",
                self.pids.to_string(),
                MIN_PIDS.to_string(),
                "the stack runs about 40 tasks idle (MariaDB's threads, php-fpm and nginx workers)",
            );
        }
        if self.cpu_milli < MIN_CPU_MILLI {
            return low(
                "--cpus",
                format!("{:.3}", self.cpu_milli as f64 / 1000.0),
                "0.1".into(),
                "below a tenth of a CPU the first start takes minutes",
            );
        }
        Ok(())
    }

    pub fn cpus_text(&self) -> String {
        let s = format!("{:.3}", self.cpu_milli as f64 / 1000.0);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1").unwrap(), 1000);
        assert_eq!(parse_cpus("0.5").unwrap(), 500);
        assert_eq!(parse_cpus(".25").unwrap(), 250);
        assert_eq!(parse_cpus("2.125").unwrap(), 2125);
        for bad in ["", ".", "1.2345", "-1", "1e3", "x", "99999999999"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn floors() {
        Limits::default().check("a/b").unwrap();
        let e = Limits {
            memory_bytes: 64 << 20,
            ..Default::default()
        }
        .check("a/b")
        .unwrap_err()
        .to_string();
        assert!(e.contains("--memory") && e.contains("below"), "{e}");
        assert!(Limits {
            pids: 10,
            ..Default::default()
        }
        .check("a/b")
        .is_err());
        assert!(Limits {
            cpu_milli: 50,
            ..Default::default()
        }
        .check("a/b")
        .is_err());
        assert_eq!(
            Limits {
                cpu_milli: 1500,
                ..Default::default()
            }
            .cpus_text(),
            "1.5"
        );
    }
}
