//! Integration tests of the image store: layer unpacking, hostile layers, the store,
//! and pulls from fake and real registries.
//!
//! Fixtures come from `$KOJI_ADJUTANT_FIXTURES` (or tests/fixtures/make-fixtures.sh).
//! Some tests need root; they re-execute themselves as the unprivileged test user
//! (uid 4242) where the rootless path is what is being tested.

mod hostile;
mod registry;
mod store;
mod support;
mod unpack;
