//! Task handlers for Koji methods, one module per method (or family), each returning
//! exactly the result kojid returns. [`register_all`] adds them to a registry; the
//! daemon's `default_handlers` calls it.
//!
//! - repos: [`new_repo`], [`createrepo`];
//! - rpm builds: [`build`] (the parent), [`chainbuild`], [`waitrepo`], [`tag_build`],
//!   and the leaves that need a buildroot, [`build_arch`], [`rebuild_srpm`],
//!   [`build_srpm_from_scm`], over the seam in [`broot`];
//!   shared pieces in [`common`] (arches, SRPM headers, downloads from topurl),
//!   [`repo_watcher`] (`koji.util.RepoWatcher`) and [`calls`] (typed hub calls).

pub mod broot;
pub mod build;
pub mod build_arch;
pub mod build_srpm_from_scm;
pub mod calls;
pub mod chainbuild;
pub mod common;
pub mod container;
pub mod createrepo;
pub mod new_repo;
pub mod rebuild_srpm;
pub mod repo_watcher;
pub mod tag_build;
pub mod waitrepo;

use std::sync::Arc;

use crate::daemon::HandlerRegistry;

/// Register every task handler of this module.
pub fn register_all(reg: &mut HandlerRegistry) {
    reg.register(Arc::new(new_repo::NewRepo));
    reg.register(Arc::new(createrepo::Createrepo::default()));
    reg.register(Arc::new(build::Build));
    reg.register(Arc::new(chainbuild::ChainBuild));
    reg.register(Arc::new(waitrepo::Waitrepo));
    reg.register(Arc::new(tag_build::TagBuild));
}

/// Register the tasks that need buildroots, made by `factory`.
pub fn register_buildroot_tasks(reg: &mut HandlerRegistry, factory: broot::SharedFactory) {
    reg.register(Arc::new(build_arch::BuildArch {
        factory: factory.clone(),
    }));
    reg.register(Arc::new(rebuild_srpm::RebuildSrpm {
        factory: factory.clone(),
    }));
    reg.register(Arc::new(build_srpm_from_scm::BuildSrpmFromScm { factory }));
}
