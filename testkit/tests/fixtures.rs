//! The fixtures are what the scripts promise: valid OCI layouts whose blobs match their
//! digests, identical content in the gzip and zstd variants, a two-platform index, the
//! SRPMs/RPMs with the right dependencies, and (tier 1) the seeded rpm build image.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;

use adjutant_testkit::{fixtures_dir, oci_layout, rpmroot_dir};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn sha256_hex(mut r: impl Read) -> String {
    let mut h = Sha256::new();
    io::copy(&mut r, &mut h).expect("reading for sha256");
    hex::encode(h.finalize())
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// Reads a blob and checks it against its descriptor (digest and size).
fn read_blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().expect("descriptor digest");
    let data = std::fs::read(blob_path(layout, digest)).expect("blob exists");
    assert_eq!(
        format!("sha256:{}", sha256_hex(&data[..])),
        digest,
        "blob content matches digest"
    );
    assert_eq!(
        data.len() as u64,
        desc["size"].as_u64().expect("size"),
        "blob size of {digest}"
    );
    data
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// The descriptor index.json tags `latest`.
fn latest(layout: &Path) -> Value {
    let index = json(&std::fs::read(layout.join("index.json")).expect("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    let m = &index["manifests"].as_array().expect("manifests")[0];
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    m.clone()
}

/// Verifies manifest, config and every layer of a single-platform image; returns
/// (manifest, config, uncompressed layer diff_ids as computed from the blobs).
fn verify_image(layout: &Path, manifest_desc: &Value) -> (Value, Value, Vec<String>) {
    assert_eq!(
        manifest_desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let manifest = json(&read_blob(layout, manifest_desc));
    let config = json(&read_blob(layout, &manifest["config"]));
    let layers = manifest["layers"].as_array().expect("layers");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(layers.len(), diff_ids.len(), "one diff_id per layer");
    assert_eq!(
        config["history"].as_array().map(Vec::len),
        Some(layers.len())
    );
    let mut computed = Vec::new();
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let blob = read_blob(layout, layer);
        let raw: Box<dyn Read> = match layer["mediaType"].as_str().expect("layer media type") {
            "application/vnd.oci.image.layer.v1.tar+gzip" => {
                Box::new(flate2::read::GzDecoder::new(&blob[..]))
            }
            "application/vnd.oci.image.layer.v1.tar+zstd" => {
                Box::new(zstd::Decoder::new(&blob[..]).expect("zstd"))
            }
            "application/vnd.oci.image.layer.v1.tar" => Box::new(&blob[..]),
            other => panic!("unexpected layer media type {other}"),
        };
        let id = format!("sha256:{}", sha256_hex(raw));
        assert_eq!(
            id,
            diff_id.as_str().expect("diff_id"),
            "diff_id of {}",
            layer["digest"]
        );
        computed.push(id);
    }
    (manifest, config, computed)
}

fn raw_layer_id(name: &str) -> String {
    let f = File::open(fixtures_dir().join("layers").join(name)).expect("raw layer");
    format!("sha256:{}", sha256_hex(f))
}

#[test]
fn single_platform_images_are_valid_and_built_from_the_raw_layers() {
    let busybox = raw_layer_id("busybox.tar");
    let cases: &[(&str, &[&str])] = &[
        ("busybox", &["busybox.tar"]),
        ("busybox-uncompressed", &["busybox.tar"]),
        (
            "multilayer",
            &["busybox.tar", "multilayer-add.tar", "multilayer-change.tar"],
        ),
        (
            "multilayer-zstd",
            &["busybox.tar", "multilayer-add.tar", "multilayer-change.tar"],
        ),
        ("devnodes", &["busybox.tar", "devnodes.tar"]),
    ];
    for (image, layers) in cases {
        let layout = oci_layout(image);
        let (_, config, ids) = verify_image(&layout, &latest(&layout));
        let want: Vec<String> = layers.iter().map(|l| raw_layer_id(l)).collect();
        assert_eq!(ids, want, "{image}: layers are the raw tars, in order");
        assert_eq!(ids[0], busybox);
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
    }
}

#[test]
fn multiarch_index_has_an_amd64_and_an_arm64_manifest() {
    let layout = oci_layout("multiarch");
    let top = latest(&layout);
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    let index = json(&read_blob(&layout, &top));
    let mut platforms = BTreeMap::new();
    for m in index["manifests"].as_array().expect("manifests") {
        let (_, config, ids) = verify_image(&layout, m);
        assert_eq!(config["architecture"], m["platform"]["architecture"]);
        let key = format!(
            "{}/{}",
            m["platform"]["architecture"].as_str().expect("arch"),
            m["platform"]["variant"].as_str().unwrap_or("")
        );
        platforms.insert(key, ids);
    }
    assert_eq!(platforms.keys().collect::<Vec<_>>(), ["amd64/", "arm64/v8"]);
    assert_eq!(
        platforms["amd64/"],
        [raw_layer_id("busybox.tar"), raw_layer_id("arch-amd64.tar")]
    );
    assert_eq!(platforms["arm64/v8"], [raw_layer_id("arch-arm64.tar")]);
}

/// Entry names and types of a tar, normalised without "./".
fn tar_entries(path: &Path) -> BTreeMap<String, tar::EntryType> {
    let mut archive = tar::Archive::new(File::open(path).expect("tar"));
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let entry = entry.expect("entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        out.insert(name, entry.header().entry_type());
    }
    out
}

#[test]
fn multilayer_change_layer_has_the_documented_whiteouts_and_links() {
    let entries = tar_entries(&fixtures_dir().join("layers/multilayer-change.tar"));
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    for (name, kind) in [
        ("etc/.wh.motd", Regular),
        ("opt/data/.wh..wh..opq", Regular),
        ("var/.wh.del-dir", Regular),
        ("opt/keep/x-link", Symlink),
        ("opt/keep/abs-link", Symlink),
        ("opt/keep/y-hard", Link),
        ("opt/was-file", Directory),
        ("opt/was-dir", Regular),
    ] {
        assert_eq!(
            entries.get(name),
            Some(&kind),
            "{name} in multilayer-change.tar"
        );
    }
    let devs = tar_entries(&fixtures_dir().join("layers/devnodes.tar"));
    assert_eq!(devs.get("dev/null"), Some(&tar::EntryType::Char));
    assert_eq!(devs.get("dev/loop0"), Some(&tar::EntryType::Block));
    assert_eq!(devs.get("dev/initctl"), Some(&tar::EntryType::Fifo));
}

#[test]
fn hostile_layers_contain_the_escapes_they_are_named_after() {
    let dir = fixtures_dir().join("layers/hostile");
    let has = |tar: &str, name: &str| {
        let e = tar_entries(&dir.join(tar));
        assert!(
            e.contains_key(name),
            "{tar} should contain {name:?}, has {:?}",
            e.keys()
        );
    };
    has("dotdot.tar", "../koji-adjutant-escaped-dotdot");
    has("absolute.tar", "/tmp/koji-adjutant-escaped-absolute");
    has("symlink-escape.tar", "evil/koji-adjutant-escaped-symlink");
    has(
        "symlink-absolute.tar",
        "evil/koji-adjutant-escaped-abs-symlink",
    );
    has("hardlink-escape.tar", "shadow-link");
    has("whiteout-escape.tar", "etc/.wh...");
}

fn rpm_query(path: &Path, format: &str) -> String {
    let out = Command::new("rpm")
        .args(["-qp", "--qf", format])
        .arg(path)
        .output()
        .expect("run rpm (tests/setup-host.sh installs it)");
    assert!(
        out.status.success(),
        "rpm -qp {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn srpms_and_the_koji_only_rpm_have_the_expected_dependencies() {
    let fx = fixtures_dir();
    let reqs = |srpm: &str| rpm_query(&fx.join("srpms").join(srpm), "[%{REQUIRENAME}\n]");
    let hello = reqs("hello-1.0-1.src.rpm");
    assert!(
        hello.lines().any(|l| l == "gcc") && hello.lines().any(|l| l == "make"),
        "{hello}"
    );
    assert!(reqs("needs-dep-1.0-1.src.rpm")
        .lines()
        .any(|l| l == "koji-only-dep"));
    for srpm in [
        "hello-data-1.0-1.src.rpm",
        "fails-build-1.0-1.src.rpm",
        "koji-only-dep-1.0-1.src.rpm",
    ] {
        assert_eq!(
            rpm_query(&fx.join("srpms").join(srpm), "%{ARCH} %{SOURCEPACKAGE}\n").trim(),
            "noarch 1"
        );
    }
    let dep = fx.join("rpms/koji-only-dep-1.0-1.noarch.rpm");
    assert_eq!(
        rpm_query(&dep, "%{NEVRA} %{SOURCERPM}"),
        "koji-only-dep-1.0-1.noarch koji-only-dep-1.0-1.src.rpm"
    );
    assert_eq!(
        rpm_query(&dep, "[%{FILENAMES}\n]"),
        "/usr/share/koji-only-dep/marker\n"
    );
    let spec = std::fs::read_to_string(fx.join("src/fails-build.spec")).expect("fails-build.spec");
    assert!(spec.contains("exit 1"));
    assert!(fx.join("src/hello-1.0.tar.gz").is_file());
}

#[test]
fn rpmroot_has_a_seeded_rpmdb_layer_and_a_rootless_friendly_base() {
    let layout = rpmroot_dir();
    let (manifest, config, _) = verify_image(layout, &latest(layout));
    assert_eq!(config["config"]["Cmd"][0], "/bin/bash");
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2, "base + rpmdb layer");

    // Layer 2: the rpm database and the macro pointing rpm at it.
    let blob = File::open(blob_path(
        layout,
        layers[1]["digest"].as_str().expect("digest"),
    ))
    .expect("layer 2");
    let mut names = Vec::new();
    let mut macros = String::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if name == "etc/rpm/macros.dbpath" {
            entry.read_to_string(&mut macros).expect("macros");
        }
        names.push(name);
    }
    assert_eq!(macros, "%_dbpath /usr/lib/sysimage/rpm\n");
    assert!(
        names
            .iter()
            .any(|n| n == "usr/lib/sysimage/rpm/rpmdb.sqlite"),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with("-shm") || n.ends_with("-wal")),
        "{names:?}"
    );

    // Layer 1: no device nodes; mockbuild/mock and /builddir owned by them; rpm, dnf, gcc.
    let blob = File::open(blob_path(
        layout,
        layers[0]["digest"].as_str().expect("digest"),
    ))
    .expect("layer 1");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    let (mut passwd, mut group, mut builddir, mut tools) = (String::new(), String::new(), None, 0);
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let kind = entry.header().entry_type();
        let name = entry
            .path()
            .expect("path")
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        assert!(
            !kind.is_character_special() && !kind.is_block_special(),
            "device node {name}"
        );
        match name.as_str() {
            "etc/passwd" => {
                entry.read_to_string(&mut passwd).expect("etc/passwd");
            }
            "etc/group" => {
                entry.read_to_string(&mut group).expect("etc/group");
            }
            "builddir" | "builddir/" => {
                builddir = Some((
                    entry.header().uid().expect("uid"),
                    entry.header().gid().expect("gid"),
                ))
            }
            "usr/bin/rpmbuild"
            | "usr/bin/dnf"
            | "usr/bin/gcc"
            | "usr/bin/g++"
            | "usr/bin/createrepo_c" => tools += 1,
            _ => {}
        }
    }
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("mockbuild:x:1000:135:")),
        "{passwd}"
    );
    assert!(
        group.lines().any(|l| l.starts_with("mock:x:135:")),
        "{group}"
    );
    assert_eq!(builddir, Some((1000, 135)));
    assert_eq!(
        tools, 5,
        "rpmbuild, dnf, gcc, g++ and createrepo_c are in the base layer"
    );
}

#[test]
fn busybox_oci_archive_is_the_busybox_layout_in_a_tar() {
    let layout = oci_layout("busybox");
    let mut archive = tar::Archive::new(
        File::open(fixtures_dir().join("archives/busybox.oci.tar")).expect("archive"),
    );
    let mut files = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.header().entry_type().is_file() {
            let name = entry
                .path()
                .expect("path")
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            files.insert(name, data);
        }
    }
    let mut want = BTreeMap::new();
    for name in ["oci-layout", "index.json"] {
        want.insert(
            name.to_owned(),
            std::fs::read(layout.join(name)).expect("layout file"),
        );
    }
    for blob in std::fs::read_dir(layout.join("blobs/sha256")).expect("blobs") {
        let blob = blob.expect("blob");
        let name = format!("blobs/sha256/{}", blob.file_name().to_string_lossy());
        want.insert(name, std::fs::read(blob.path()).expect("blob"));
    }
    assert_eq!(files, want);
}
