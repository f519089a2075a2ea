//! Layer unpack throughput, in MB/s of uncompressed data, on tmpfs (/dev/shm), so
//! that the number measures the unpacker (decompression, hashing, tar parsing,
//! syscalls) and not the disk.
//!
//! Inputs: the rpmroot fixture's base layer (438 MB tar, 148 MB gzip, ~10k entries) as
//! gzip (the blob itself), zstd and uncompressed (made once per run), and the small
//! busybox layer. `cargo bench --bench layer_unpack`; the peer
//! comparison against tar and pigz is benches/peers/unpack.sh.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use adjutant_runtime::digest::Digest;
use adjutant_runtime::idmap::IdMapping;
use adjutant_runtime::layer::{self, Compression, Limits, Ownership, UnpackJob};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

struct Input {
    name: String,
    blob: PathBuf,
    compression: Compression,
    diff_id: Digest,
    tar_bytes: u64,
}

/// The first layer of an OCI layout, with its diff_id.
fn first_layer(layout: &Path) -> (PathBuf, Compression, Digest) {
    let read =
        |p: &Path| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap();
    let idx = read(&layout.join("index.json"));
    let blob = |d: &serde_json::Value| layout.join("blobs/sha256").join(&d.as_str().unwrap()[7..]);
    let m = read(&blob(&idx["manifests"][0]["digest"]));
    let c = read(&blob(&m["config"]["digest"]));
    let l = &m["layers"][0];
    let comp = Compression::from_media_type(l["mediaType"].as_str().unwrap()).unwrap();
    (
        blob(&l["digest"]),
        comp,
        Digest::parse(c["rootfs"]["diff_ids"][0].as_str().unwrap()).unwrap(),
    )
}

fn inputs(scratch: &Path) -> Vec<Input> {
    let mut v = Vec::new();
    let (blob, c, diff_id) = first_layer(adjutant_testkit::rpmroot_dir());
    // Decompress once to know the size and to make the other two variants.
    let tar = scratch.join("rpmroot.tar");
    let mut dec = flate2::read::MultiGzDecoder::new(std::fs::File::open(&blob).unwrap());
    std::io::copy(&mut dec, &mut std::fs::File::create(&tar).unwrap()).unwrap();
    let tar_bytes = std::fs::metadata(&tar).unwrap().len();
    let zst = scratch.join("rpmroot.tar.zst");
    let mut enc = zstd::Encoder::new(std::fs::File::create(&zst).unwrap(), 3).unwrap();
    std::io::copy(&mut std::fs::File::open(&tar).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    for (name, blob, compression) in [
        ("rpmroot-gzip", blob, c),
        ("rpmroot-zstd", zst, Compression::Zstd),
        ("rpmroot-tar", tar, Compression::None),
    ] {
        v.push(Input {
            name: name.into(),
            blob,
            compression,
            diff_id: diff_id.clone(),
            tar_bytes,
        });
    }
    let (blob, compression, diff_id) = first_layer(&adjutant_testkit::oci_layout("busybox"));
    let tar_bytes = std::fs::metadata(adjutant_testkit::fixtures_dir().join("layers/busybox.tar"))
        .unwrap()
        .len();
    v.push(Input {
        name: "busybox-gzip".into(),
        blob,
        compression,
        diff_id,
        tar_bytes,
    });
    v
}

fn bench(c: &mut Criterion) {
    let scratch = tempfile::Builder::new()
        .prefix("ka-bench-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let ownership = if nix::unistd::geteuid().is_root() {
        Ownership::Shift(IdMapping::root(100000, 65536).unwrap())
    } else {
        Ownership::Ignore
    };
    let mut g = c.benchmark_group("layer_unpack");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(20));
    for input in inputs(scratch.path()) {
        g.throughput(Throughput::BytesDecimal(input.tar_bytes));
        g.bench_function(&input.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let target = scratch.path().join(format!("out-{i}"));
                    std::fs::create_dir(&target).unwrap();
                    let job = UnpackJob {
                        blob: input.blob.clone(),
                        compression: input.compression,
                        diff_id: input.diff_id.clone(),
                        target: target.clone(),
                        ownership: ownership.clone(),
                        limits: Limits::default(),
                        label: input.name.clone(),
                    };
                    let t0 = Instant::now();
                    layer::unpack(&job).unwrap();
                    total += t0.elapsed();
                    adjutant_runtime::store::remove_tree(&target).unwrap();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
