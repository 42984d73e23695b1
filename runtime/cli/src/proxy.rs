//! `sgrun proxy`: placeholder until the proxy crate lands; `sync` reloads a running proxy.

use anyhow::Result;

pub fn sync(_ctx: &crate::site::Ctx) -> Result<()> {
    Ok(())
}
