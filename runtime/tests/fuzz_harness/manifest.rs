//! The checks of the `image_manifest` fuzz target, shared with the regression tests.
//!
//! Included by path from `fuzz/fuzz_targets/image_manifest.rs` and from
//! `runtime/tests/fuzz_regressions.rs`. See docs/fuzzing.md.
//!
//! Input: one byte choosing the content type the server claims, then the manifest (or
//! index) document, then optionally a NUL byte and the image configuration.

#![allow(dead_code)]

use adjutant_runtime::digest::Digest;
use adjutant_runtime::manifest::{self, media, oci_form, parse_document, Document};
use adjutant_runtime::platform::Platform;
use adjutant_runtime::store::info_from;

/// Content types a registry (or a referring descriptor) may claim.
pub const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some(media::OCI_MANIFEST),
    Some(media::OCI_INDEX),
    Some(media::DOCKER_MANIFEST),
    Some(media::DOCKER_LIST),
    Some(media::DOCKER_SCHEMA1_SIGNED),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
];

/// Build an input (for seeds and tests): content-type index, manifest, config.
pub fn input(ct: u8, manifest: &[u8], config: Option<&[u8]>) -> Vec<u8> {
    let mut v = vec![ct];
    v.extend_from_slice(manifest);
    if let Some(c) = config {
        v.push(0);
        v.extend_from_slice(c);
    }
    v
}

fn json_of<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("our own types serialise")
}

/// Parse as the store does: never panic; what parses must re-serialise to a document
/// that parses to the same thing; the OCI form of a Docker manifest must be an OCI
/// manifest with the same blobs; a manifest with a config must give an `ImageInfo` or
/// an error, never a panic or a silently wrapped total size.
pub fn check_manifest(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let ct = CONTENT_TYPES[sel as usize % CONTENT_TYPES.len()];
    let (doc, config) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let parsed = match parse_document(doc, ct) {
        Ok(d) => d,
        Err(e) => {
            assert!(!e.is_empty());
            return;
        }
    };
    match parsed {
        Document::Manifest(m) => {
            assert_eq!(m.schema_version, 2);
            let bytes = serde_json::to_vec(&*m).unwrap();
            match parse_document(&bytes, ct) {
                Ok(Document::Manifest(again)) => assert_eq!(json_of(&*m), json_of(&*again)),
                other => panic!("re-serialised manifest parses as {other:?}"),
            }
            let checked = m.check_image();
            if let Some((o, obytes)) = oci_form(&m) {
                assert_eq!(o.media_type.as_deref(), Some(media::OCI_MANIFEST));
                assert_eq!(o.config.digest, m.config.digest);
                assert_eq!(
                    o.layers.iter().map(|l| &l.digest).collect::<Vec<_>>(),
                    m.layers.iter().map(|l| &l.digest).collect::<Vec<_>>()
                );
                match parse_document(&obytes, Some(media::OCI_MANIFEST)) {
                    Ok(Document::Manifest(back)) => {
                        assert_eq!(json_of(&o), json_of(&*back));
                        assert!(oci_form(&back).is_none(), "the OCI form is not OCI");
                        if checked.is_ok() {
                            back.check_image().expect("the OCI form of a usable image");
                        }
                    }
                    other => panic!("the OCI form parses as {other:?}"),
                }
            }
            if let Some(cfg) = config {
                let mdigest = Digest::of(doc);
                let mt = m.media_type.as_deref().unwrap_or(media::OCI_MANIFEST);
                match info_from("fuzz/image:latest", &mdigest, mt, doc.len() as u64, &m, cfg) {
                    Ok(info) => {
                        assert!(checked.is_ok());
                        assert_eq!(info.layers.len(), m.layers.len());
                        assert_eq!(info.diff_ids.len(), m.layers.len());
                        let total = m
                            .layers
                            .iter()
                            .try_fold(doc.len() as u64 + m.config.size, |a, l| {
                                a.checked_add(l.size)
                            });
                        assert_eq!(Some(info.size), total, "image size");
                    }
                    Err(e) => drop(e.to_string()),
                }
            }
        }
        Document::Index(i) => {
            let bytes = serde_json::to_vec(&i).unwrap();
            match parse_document(&bytes, ct) {
                Ok(Document::Index(again)) => assert_eq!(json_of(&i), json_of(&again)),
                other => panic!("re-serialised index parses as {other:?}"),
            }
            for arch in ["x86_64", "aarch64", "armhfp", "ppc64le", "s390x", "noarch"] {
                let Ok(p) = Platform::for_arch(arch) else {
                    continue;
                };
                match i.select(&p) {
                    Ok(d) => {
                        assert!(manifest::is_manifest_type(&d.media_type));
                        let dp = d
                            .platform
                            .as_ref()
                            .expect("a selected manifest has a platform");
                        assert!(p.matches(&dp.os, &dp.architecture, dp.variant.as_deref()));
                    }
                    Err(e) => assert!(e.contains("no manifest for platform")),
                }
            }
        }
    }
}
