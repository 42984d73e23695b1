//! The engine's root filesystem hook, served by `sgrun-rootfs`: containers whose config names
//! a tenant (`io.sgrun.tenant`) run on the tenant's overlay of an image, in the tenant's ids.

use std::path::Path;

use oci_spec::runtime::Spec;
use sgrun_engine::{HookError, MountedRootfs, RootfsProvider};
use sgrun_rootfs::{Mounted, TenantRootfs};

#[derive(Debug)]
pub struct TenantRootfsProvider(pub TenantRootfs);

struct Finish(Mounted);

impl MountedRootfs for Finish {
    fn finish(self: Box<Self>) -> Result<(), HookError> {
        Ok(self.0.finish()?)
    }
}

impl RootfsProvider for TenantRootfsProvider {
    fn claim(&self, id: &str, runtime_root: &Path, spec: &mut Spec) -> Result<bool, HookError> {
        Ok(self.0.claim(id, runtime_root, spec)?.is_some())
    }

    fn mount(
        &self,
        id: &str,
        runtime_root: &Path,
        spec: &Spec,
    ) -> Result<Box<dyn MountedRootfs>, HookError> {
        Ok(Box::new(Finish(self.0.mount(id, runtime_root, spec)?)))
    }

    fn release(&self, id: &str, runtime_root: &Path) -> Result<(), HookError> {
        Ok(self.0.release(id, runtime_root)?)
    }
}
