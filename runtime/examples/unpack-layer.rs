//! Unpack one layer blob into a directory (used by benches/peers/unpack.sh).
//!
//! `unpack-layer BLOB TARGET_DIR gzip|zstd|none DIFF_ID [ignore|verbatim|shift:BASE]`
//! TARGET_DIR must not exist (it is created). Prints the stats as JSON.

use std::process::ExitCode;

use adjutant_runtime::digest::Digest;
use adjutant_runtime::idmap::IdMapping;
use adjutant_runtime::layer::{self, Compression, Limits, Ownership, UnpackJob};

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: unpack-layer BLOB TARGET_DIR gzip|zstd|none DIFF_ID [ignore|verbatim|shift:BASE]");
        return ExitCode::from(2);
    }
    let compression = match a[3].as_str() {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "none" => Compression::None,
        other => {
            eprintln!("unknown compression {other}");
            return ExitCode::from(2);
        }
    };
    let ownership = match a.get(5).map(String::as_str) {
        None | Some("ignore") => Ownership::Ignore,
        Some("verbatim") => Ownership::Verbatim,
        Some(s) if s.starts_with("shift:") => {
            let base = s[6..].parse().expect("shift:BASE");
            Ownership::Shift(IdMapping::root(base, 65536).expect("mapping"))
        }
        Some(other) => {
            eprintln!("unknown ownership {other}");
            return ExitCode::from(2);
        }
    };
    let diff_id = match Digest::parse(&a[4]) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir(&a[2]) {
        eprintln!("creating {}: {e}", a[2]);
        return ExitCode::from(1);
    }
    let job = UnpackJob {
        blob: a[1].clone().into(),
        compression,
        diff_id,
        target: a[2].clone().into(),
        ownership,
        limits: Limits::default(),
        label: a[1].clone(),
    };
    match layer::unpack(&job) {
        Ok(stats) => {
            println!("{}", serde_json::to_string(&stats).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
