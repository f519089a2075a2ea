//! `koji-adjutant image pull|import|ls|inspect|rm|prune`: the image store from the
//! command line (docs/images.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use adjutant_runtime::idmap::{find_subordinate, IdMapping};
use adjutant_runtime::platform::Platform;
use adjutant_runtime::registry::RegistryConfig;
use adjutant_runtime::store::{
    ErrorClass, ImportOptions, PullOptions, PullPolicy, PullReport, Store, StoreError, StoreOptions,
};
use clap::{Args, Subcommand};

use super::exit;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry into the store (also accepts oci:DIR[:TAG] and
    /// oci-archive:FILE[:TAG]). Prints the manifest digest.
    Pull(PullArgs),
    /// Copy an image from an OCI layout into the store under NAME (default
    /// localhost/<dir>:<tag>), so that configs and policies can name it.
    Import(ImportArgs),
    /// List the images in the store.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show an image (name, digests, config, layers) as JSON.
    Inspect {
        /// Name, short name, manifest digest or id prefix.
        reference: String,
    },
    /// Remove image names. Blobs and unpacked layers stay until `prune`.
    #[command(alias = "remove")]
    Rm {
        /// Names, digests or id prefixes (a digest removes every name of that image).
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove blobs and unpacked layers no image references, and crash leftovers.
    Prune {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Registries (host or host:port) that may be reached over plain HTTP or with
    /// unverified TLS. Nothing else ever is.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST[:PORT]",
        env = "KOJI_ADJUTANT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// Read registry credentials only from this file (default: podman's lookup order:
    /// $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
    /// ~/.config/containers/auth.json, ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// [REGISTRY/]REPO[:TAG][@sha256:DIGEST], oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub reference: String,
    /// Build architecture whose image to pick from a multi-arch index (x86_64,
    /// aarch64, ppc64le, s390x, i686, noarch = this host).
    #[arg(long, default_value = "noarch")]
    pub arch: String,
    /// When to ask the registry: always, missing (use the stored image if present),
    /// never.
    #[arg(long, default_value = "missing")]
    pub policy: PullPolicy,
    /// Also unpack the layers now (otherwise that happens on first use).
    #[arg(long)]
    pub unpack: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub source: String,
    /// Name in the store, e.g. localhost/buildroot:latest (a name without a registry
    /// gets localhost/).
    pub name: Option<String>,
    /// Architecture to pick if the layout holds several.
    #[arg(long, default_value = "noarch")]
    pub arch: String,
    /// Also unpack the layers now.
    #[arg(long)]
    pub unpack: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print names only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The default store: /var/lib/koji-adjutant as root, $XDG_DATA_HOME/koji-adjutant
/// (~/.local/share/koji-adjutant) otherwise.
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/koji-adjutant");
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("koji-adjutant")
}

/// The id mapping layers are unpacked for: root mode 0..65536 → 100000.. as root;
/// the user's subordinate ranges rootless; the degraded single-id mapping without them.
pub fn default_mapping() -> Result<IdMapping, String> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    if uid == 0 {
        return IdMapping::root(100000, 65536).map_err(|e| e.to_string());
    }
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let su = find_subordinate(Path::new("/etc/subuid"), &name, uid).map_err(|e| e.to_string())?;
    let sg = find_subordinate(Path::new("/etc/subgid"), &name, uid).map_err(|e| e.to_string())?;
    Ok(match (su, sg) {
        (Some(u), Some(g)) => IdMapping::rootless(uid, gid, u, g),
        _ => IdMapping::single(uid, gid),
    })
}

fn exit_code(e: &StoreError) -> u8 {
    match e.class() {
        ErrorClass::NotFound => exit::NOT_FOUND,
        ErrorClass::Usage => exit::USAGE,
        _ => exit::FAILURE,
    }
}

fn fail(e: &StoreError) -> ExitCode {
    eprintln!("koji-adjutant: {e}");
    ExitCode::from(exit_code(e))
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("koji-adjutant: {msg}");
    ExitCode::from(exit::USAGE)
}

fn platform(arch: &str) -> Result<Platform, ExitCode> {
    Platform::for_arch(arch).map_err(|e| usage(&e.to_string()))
}

fn mapping_for(unpack: bool) -> Result<Option<IdMapping>, ExitCode> {
    if !unpack {
        return Ok(None);
    }
    default_mapping()
        .map(Some)
        .map_err(|e| usage(&format!("cannot choose an id mapping: {e}")))
}

/// Run an image subcommand against the store at `root`.
pub fn run(root: Option<&Path>, cmd: ImageCommand) -> ExitCode {
    let root = root.map(Path::to_owned).unwrap_or_else(default_root);
    let registry = match &cmd {
        ImageCommand::Pull(p) => RegistryConfig {
            insecure: p.registry.insecure.clone(),
            auth_file: p.registry.authfile.clone(),
            ..Default::default()
        },
        _ => RegistryConfig::default(),
    };
    let store = match Store::open_with(
        &root,
        StoreOptions {
            registry,
            ..Default::default()
        },
    ) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    // Rootless unpacking (and pruning) with subordinate ids runs in a user namespace,
    // through this binary's helper.
    store.set_userns_runner(adjutant_runtime::userns::store_runner(PathBuf::from(
        "/proc/self/exe",
    )));
    match cmd {
        ImageCommand::Pull(a) => pull(&store, a),
        ImageCommand::Import(a) => import(&store, a),
        ImageCommand::Ls(a) => ls(&store, a),
        ImageCommand::Inspect { reference } => match store.resolve(&reference) {
            Ok(info) => print_json(&info),
            Err(e) => fail(&e),
        },
        ImageCommand::Rm { references } => {
            let mut code = ExitCode::SUCCESS;
            for r in references {
                match store.remove(&r) {
                    Ok(names) => names.iter().for_each(|n| println!("{n}")),
                    Err(e) => code = fail(&e),
                }
            }
            code
        }
        ImageCommand::Prune { json } => match store.prune() {
            Ok(r) if json => print_json(&r),
            Ok(r) => {
                println!(
                    "removed {} blobs ({:.1} MB), {} unpacked layers, {} leftovers; {} unreferenced layers in use kept",
                    r.blobs_removed,
                    r.bytes_freed as f64 / 1e6,
                    r.layers_removed,
                    r.temp_removed,
                    r.layers_in_use
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> ExitCode {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("koji-adjutant: {e}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

fn report(r: &PullReport, quiet: bool) {
    if !quiet {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "{}: {} blobs fetched ({:.1} MB), {} already present{}",
            r.image.name,
            r.blobs_fetched,
            r.bytes_fetched as f64 / 1e6,
            r.blobs_present,
            match &r.unpack {
                Some(u) => format!(
                    "; {} layers unpacked, {} already unpacked",
                    u.layers_unpacked, u.layers_present
                ),
                None => String::new(),
            }
        );
    }
    println!("{}", r.image.manifest_digest);
}

fn pull(store: &Store, a: PullArgs) -> ExitCode {
    let platform = match platform(&a.arch) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let unpack = match mapping_for(a.unpack) {
        Ok(m) => m,
        Err(c) => return c,
    };
    let opts = PullOptions {
        platform,
        policy: a.policy,
        unpack,
        progress: super::progress::for_terminal(a.quiet),
        ..Default::default()
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("koji-adjutant: starting the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let res = rt.block_on(store.pull(&a.reference, &opts));
    drop(opts); // finishes the progress display before the summary
    match res {
        Ok(r) => {
            report(&r, a.quiet);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn import(store: &Store, a: ImportArgs) -> ExitCode {
    let platform = match platform(&a.arch) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let unpack = match mapping_for(a.unpack) {
        Ok(m) => m,
        Err(c) => return c,
    };
    let opts = ImportOptions {
        platform,
        unpack,
        progress: super::progress::for_terminal(a.quiet),
    };
    let res = store.import(&a.source, a.name.as_deref(), &opts);
    drop(opts); // finishes the progress display before the summary
    match res {
        Ok(r) => {
            report(&r, a.quiet);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn ls(store: &Store, a: LsArgs) -> ExitCode {
    let images = match store.list() {
        Ok(i) => i,
        Err(e) => return fail(&e),
    };
    if a.json {
        return print_json(&images);
    }
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for i in &images {
            let _ = writeln!(out, "{}", i.name);
        }
        return ExitCode::SUCCESS;
    }
    let w = images
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:w$}  {:12}  {:8}  {:20}  {:>10}",
        "NAME", "ID", "ARCH", "CREATED", "SIZE"
    );
    for i in &images {
        let created = i.config.created().as_deref().unwrap_or("-");
        let _ = writeln!(
            out,
            "{:w$}  {:12}  {:8}  {:20}  {:>7.1} MB",
            i.name,
            i.manifest_digest.short(),
            i.config.architecture().to_string(),
            &created[..created.len().min(20)],
            i.size as f64 / 1e6
        );
    }
    ExitCode::SUCCESS
}
