//! Reading rpm files without librpm: headers ([`header`]) and koji's noarch
//! "kojihash" ([`kojihash`]). See docs/adr/0006-rpm-headers.md for why this is not the
//! `rpm` crate.

pub mod header;
pub mod kojihash;

pub use header::{tag, Header, RpmError, RpmHeaders};
pub use kojihash::{kojihash, kojihash_json};
