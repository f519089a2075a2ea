//! Test support: fixtures, layer and image builders, running a test as the
//! unprivileged test user, and an in-process fake registry.

#![allow(dead_code)]

pub mod fake_registry;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use adjutant_runtime::digest::Digest;
use adjutant_runtime::layer::Compression;

pub use adjutant_testkit::{
    as_test_user, fixtures_dir as fixtures, is_root, oci_layout as fixture_oci, TEST_UID,
};

/// A temporary directory (under /var/tmp, on disk) the test user can use too.
pub fn tempdir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("ka-images-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    if is_root() {
        std::os::unix::fs::chown(d.path(), Some(TEST_UID), Some(TEST_UID)).unwrap();
    }
    d
}

// ---------------------------------------------------------------- layers

/// Builds layer tars, including malformed and hostile ones.
pub struct LayerBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> Self {
        LayerBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, name: &[u8], size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        // Raw name bytes: the builder's set_path would refuse hostile names.
        let n = &mut h.as_old_mut().name;
        assert!(name.len() <= n.len(), "name too long for a raw header");
        n[..name.len()].copy_from_slice(name);
        h
    }

    /// Append an entry with full control; `f` may adjust the header.
    pub fn raw(
        &mut self,
        kind: tar::EntryType,
        name: &str,
        data: &[u8],
        link: Option<&str>,
        f: impl FnOnce(&mut tar::Header),
    ) -> &mut Self {
        let mut h = Self::header(kind, name.as_bytes(), data.len() as u64, 0o644);
        if let Some(l) = link {
            let ln = &mut h.as_old_mut().linkname;
            ln[..l.len()].copy_from_slice(l.as_bytes());
        }
        f(&mut h);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(tar::EntryType::Directory, name, b"", None, |h| {
            h.set_mode(mode)
        })
    }
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(tar::EntryType::Regular, name, data, None, |_| {})
    }
    pub fn file_with(
        &mut self,
        name: &str,
        data: &[u8],
        f: impl FnOnce(&mut tar::Header),
    ) -> &mut Self {
        self.raw(tar::EntryType::Regular, name, data, None, f)
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(tar::EntryType::Symlink, name, b"", Some(target), |h| {
            h.set_mode(0o777)
        })
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(tar::EntryType::Link, name, b"", Some(target), |_| {})
    }

    /// A file with PAX records (xattrs, long names...).
    pub fn pax_file(
        &mut self,
        name: &str,
        data: &[u8],
        pax: &[(&str, &[u8])],
        f: impl FnOnce(&mut tar::Header),
    ) -> &mut Self {
        self.b
            .append_pax_extensions(pax.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self.raw(tar::EntryType::Regular, name, data, None, f)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

pub fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

pub fn media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// A blob with its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: Digest,
    pub data: Vec<u8>,
    pub media_type: String,
}

impl Blob {
    pub fn new(data: Vec<u8>, media_type: &str) -> Blob {
        Blob {
            digest: Digest::of(&data),
            data,
            media_type: media_type.into(),
        }
    }
    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.data.len()})
    }
}

/// An image made in memory: manifest, config and layer blobs.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub diff_ids: Vec<Digest>,
}

impl TestImage {
    /// Build from layer tars; `arch` goes into the config.
    pub fn new(layers: &[(Vec<u8>, Compression)], arch: &str) -> TestImage {
        let diff_ids: Vec<Digest> = layers.iter().map(|(t, _)| Digest::of(t)).collect();
        let blobs: Vec<Blob> = layers
            .iter()
            .map(|(t, c)| Blob::new(compress(t, *c), media_type(*c)))
            .collect();
        Self::from_blobs(blobs, diff_ids, arch)
    }

    /// Build from ready blobs and the diff_ids to claim for them.
    pub fn from_blobs(layers: Vec<Blob>, diff_ids: Vec<Digest>, arch: &str) -> TestImage {
        let cfg = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
            "history": []
        });
        let config = Blob::new(
            serde_json::to_vec(&cfg).unwrap(),
            "application/vnd.oci.image.config.v1+json",
        );
        let man = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(
            serde_json::to_vec(&man).unwrap(),
            "application/vnd.oci.image.manifest.v1+json",
        );
        TestImage {
            manifest,
            config,
            layers,
            diff_ids,
        }
    }

    pub fn blobs(&self) -> Vec<&Blob> {
        let mut v = vec![&self.manifest, &self.config];
        v.extend(self.layers.iter());
        v
    }

    /// Load an image from an OCI layout directory (its first manifest).
    pub fn from_layout(dir: &Path) -> TestImage {
        let idx: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let read = |d: &str| std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap();
        let md = idx["manifests"][0]["digest"].as_str().unwrap();
        let mbytes = read(md);
        let m: serde_json::Value = serde_json::from_slice(&mbytes).unwrap();
        let cd = m["config"]["digest"].as_str().unwrap();
        let cbytes = read(cd);
        let c: serde_json::Value = serde_json::from_slice(&cbytes).unwrap();
        let layers = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                Blob::new(
                    read(l["digest"].as_str().unwrap()),
                    l["mediaType"].as_str().unwrap(),
                )
            })
            .collect();
        let diff_ids = c["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| Digest::parse(d.as_str().unwrap()).unwrap())
            .collect();
        TestImage {
            manifest: Blob::new(mbytes, m["mediaType"].as_str().unwrap()),
            config: Blob::new(cbytes, m["config"]["mediaType"].as_str().unwrap()),
            layers,
            diff_ids,
        }
    }

    /// Write as an OCI layout directory with tag `tag`.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        for b in self.blobs() {
            std::fs::write(dir.join("blobs/sha256").join(b.digest.hex()), &b.data).unwrap();
        }
        let mut d = self.manifest.descriptor();
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [d]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    }
}

/// An image index over manifests for several architectures.
pub fn index_for(images: &[(&TestImage, &str, Option<&str>)]) -> Blob {
    let ms: Vec<serde_json::Value> = images
        .iter()
        .map(|(img, arch, variant)| {
            let mut d = img.manifest.descriptor();
            let mut p = serde_json::json!({"architecture": arch, "os": "linux"});
            if let Some(v) = variant {
                p["variant"] = serde_json::json!(v);
            }
            d["platform"] = p;
            d
        })
        .collect();
    let idx = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": ms});
    Blob::new(
        serde_json::to_vec(&idx).unwrap(),
        "application/vnd.oci.image.index.v1+json",
    )
}

/// Snapshot of a tree: path → (type, mode, uid, gid, size, mtime, nlink, link target).
pub fn tree(root: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .args(["-printf", "%p %y %m %U %G %s %T@ %n %l\n"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// An xattr of a path (not following symlinks).
pub fn lgetxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}
