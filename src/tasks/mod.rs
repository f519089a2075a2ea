//! Task handlers for Koji methods, one module per method (or family), each returning
//! exactly the result kojid returns. [`register_all`] adds them to a registry; the
//! daemon's `default_handlers` calls it.

pub mod createrepo;
pub mod new_repo;

use std::sync::Arc;

use crate::daemon::HandlerRegistry;

/// Register every task handler of this module.
pub fn register_all(reg: &mut HandlerRegistry) {
    reg.register(Arc::new(new_repo::NewRepo));
    reg.register(Arc::new(createrepo::Createrepo));
}
