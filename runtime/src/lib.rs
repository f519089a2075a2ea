//! `adjutant-runtime`: a rootless OCI image store and container runtime for build roots.
//!
//! This crate knows nothing about Koji. It pulls, verifies and unpacks OCI images
//! ([`store`], [`registry`], [`layer`]) and starts containers from them in their own
//! user/mount/pid/net/uts/ipc namespaces with cgroup limits ([`container`]).
//!
//! Process model: nothing here forks the calling (possibly multi-threaded) process.
//! Containers are started by re-executing the current binary as a single-threaded
//! helper; binaries embedding this crate must call [`helper::dispatch`] first thing in
//! `main`, before any thread is spawned.

pub mod archive;
pub mod caps;
pub mod cgroups;
pub mod container;
pub mod digest;
pub mod helper;
pub mod idmap;
pub mod layer;
pub mod manifest;
pub mod namespaces;
pub mod platform;
pub mod probe;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod seccomp;
pub mod store;
pub mod sys;
pub mod userns;
