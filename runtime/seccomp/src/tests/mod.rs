//! Unit tests. Compiled profiles are run through a BPF interpreter (`vm`) rather than
//! installed, except in `live`, which installs filters in forked children.

mod compile;
mod docker;
mod live;
mod table;
mod vm;

use oci_spec::runtime::LinuxSeccomp;
use serde_json::Value;

use crate::{compile, CompiledSeccomp, SeccompError};

/// Parses a `linux.seccomp` section written as JSON, as config.json would carry it.
fn profile(json: Value) -> LinuxSeccomp {
    serde_json::from_value(json).expect("test profile parses")
}

fn compiled(json: Value) -> CompiledSeccomp {
    compile(&profile(json)).expect("test profile compiles")
}

fn refused(json: Value) -> SeccompError {
    compile(&profile(json)).expect_err("test profile must be refused")
}
