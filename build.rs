//! Link flags for the `koji-adjutant` binary.

fn main() {
    // Packed relative relocations (DT_RELR, glibc >= 2.36, binutils >= 2.38): the
    // dynamic loader reads a few KB instead of ~300 KB of RELA entries at every start.
    // `koji-adjutant run` starts a container in a few ms, so this is measurable
    // (benches/peers/start.sh).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
        && linker_supports_relr()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Whether `cc` accepts `-z pack-relative-relocs` (older binutils reject it).
fn linker_supports_relr() -> bool {
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    let src = std::path::Path::new(&out).join("relr-probe.c");
    let bin = std::path::Path::new(&out).join("relr-probe");
    if std::fs::write(&src, "int main(void){return 0;}\n").is_err() {
        return false;
    }
    std::process::Command::new("cc")
        .arg("-Wl,-z,pack-relative-relocs")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
