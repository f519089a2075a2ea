//! The test registry started by tests/registry.sh serves every fixture image, byte for byte.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use adjutant_testkit::{oci_layout, test_registry};
use sha2::{Digest, Sha256};

/// Minimal HTTP/1.1 GET (the registry speaks plain HTTP on loopback): (status, headers, body).
fn get(addr: &str, path: &str, accept: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("connect to the test registry {addr}: {e}"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    assert!(
        !chunked,
        "the registry answered {path} chunked; this helper does not decode that"
    );
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

const ACCEPT: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json";

fn local_top_digest(layout: &Path) -> (String, String) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("json");
    let m = &index["manifests"][0];
    (
        m["digest"].as_str().expect("digest").to_owned(),
        m["mediaType"].as_str().expect("type").to_owned(),
    )
}

#[test]
fn registry_serves_each_fixture_image_with_its_local_digest() {
    let addr = test_registry();
    let (status, _, _) = get(&addr, "/v2/", "*/*");
    assert_eq!(status, 200, "GET /v2/ without credentials");
    for name in [
        "busybox",
        "busybox-uncompressed",
        "multilayer",
        "multilayer-zstd",
        "devnodes",
        "multiarch",
        "rpmroot",
    ] {
        let (digest, media_type) = local_top_digest(&oci_layout(name));
        let (status, headers, body) =
            get(&addr, &format!("/v2/test/{name}/manifests/latest"), ACCEPT);
        assert_eq!(status, 200, "manifest of test/{name}");
        assert_eq!(
            header(&headers, "docker-content-digest"),
            digest,
            "test/{name} keeps its digest"
        );
        assert_eq!(header(&headers, "content-type"), media_type, "test/{name}");
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&body))),
            digest
        );
    }
}

#[test]
fn registry_serves_busybox_with_docker_media_types_as_busybox_v2s2() {
    let addr = test_registry();
    let (status, headers, body) = get(&addr, "/v2/test/busybox-v2s2/manifests/latest", ACCEPT);
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    // Same layer bytes as the OCI image.
    let (oci_digest, _) = local_top_digest(&oci_layout("busybox"));
    let oci_manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            oci_layout("busybox")
                .join("blobs/sha256")
                .join(&oci_digest[7..]),
        )
        .expect("manifest"),
    )
    .expect("json");
    assert_eq!(
        manifest["layers"][0]["digest"],
        oci_manifest["layers"][0]["digest"]
    );
}
