//! koji-adjutant: a Koji build host daemon (a drop-in for `kojid`) with its own
//! rootless container runtime (the `adjutant-runtime` crate).
//!
//! The worker knows nothing about namespaces: it asks the runtime for containers and
//! runs steps in them. See docs/ARCHITECTURE.md for a map of the code.

pub mod buildroot;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod fnmatch;
pub mod hub;
pub mod notify;
pub mod policy;
pub mod registry;
pub mod repo;
pub mod rpmfile;
pub mod scm;
pub mod status;
pub mod tasks;
pub mod xmlrpc;
