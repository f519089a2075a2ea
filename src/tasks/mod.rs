//! Task handlers for Koji methods, one module per method (or family), each returning
//! exactly the result kojid returns. [`register_all`] adds them to a registry; the
//! daemon's `default_handlers` calls it.
//!
//! - repos: [`new_repo`], [`createrepo`];
//! - rpm builds: [`build`] (the parent), [`chainbuild`], [`waitrepo`], [`tag_build`];
//!   shared pieces in [`common`] (arches, SRPM headers, downloads from topurl),
//!   [`repo_watcher`] (`koji.util.RepoWatcher`) and [`calls`] (typed hub calls).

pub mod build;
pub mod calls;
pub mod chainbuild;
pub mod common;
pub mod createrepo;
pub mod new_repo;
pub mod repo_watcher;
pub mod tag_build;
pub mod waitrepo;

use std::sync::Arc;

use crate::daemon::HandlerRegistry;

/// Register every task handler of this module.
pub fn register_all(reg: &mut HandlerRegistry) {
    reg.register(Arc::new(new_repo::NewRepo));
    reg.register(Arc::new(createrepo::Createrepo));
    reg.register(Arc::new(build::Build));
    reg.register(Arc::new(chainbuild::ChainBuild));
    reg.register(Arc::new(waitrepo::Waitrepo));
    reg.register(Arc::new(tag_build::TagBuild));
}
