//! The `koji-adjutant` command itself: a small front binary (src/main.rs) that runs
//! `koji-adjutant run` on its own and hands every other command to the full program,
//! `koji-adjutant-full`, by `execve` (same process, same arguments, same `argv[0]`).
//!
//! Why: starting a container is a few milliseconds, and a third of that was the
//! kernel and the dynamic loader starting our 70 MB daemon binary (page faults,
//! relocations of its half-megabyte of relocated data). The front links only what
//! `run` needs. See docs/adr/0008-front-binary.md.
//!
//! The front never decides anything the full program would decide differently: it
//! takes the plain `run` path only, and anything else — another command, `--help`,
//! `--version`, `--log`, a usage error, the `kojid` name — goes to the full program,
//! which has the complete CLI (including `run`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::{exit, run};
use crate::repo::tool::is_executable;

/// File name of the full program.
pub const FULL_NAME: &str = "koji-adjutant-full";
/// Overrides where the full program is (an absolute path).
pub const FULL_ENV: &str = "KOJI_ADJUTANT_FULL";

/// What the front does with a command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `run` without logging: the front runs it.
    Run,
    /// Everything else: the full program.
    Full,
}

/// The subset of the CLI the front handles: the global options and `run`. Parsed only
/// when [`route`] said `Run`; any error goes to the full program, which reports it.
#[derive(Debug, Parser)]
#[command(name = "koji-adjutant")]
struct FrontCli {
    #[arg(long, global = true, env = "KOJI_ADJUTANT_ROOT")]
    root: Option<PathBuf>,
    #[arg(long, global = true, env = "KOJI_ADJUTANT_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: FrontCommand,
}

#[derive(Debug, Subcommand)]
#[command(disable_help_subcommand = true)]
enum FrontCommand {
    Run(Box<run::RunArgs>),
}

/// Where the command line goes: only `[--root DIR] run …` (global options before the
/// subcommand) stays here.
pub fn route(args: &[OsString]) -> Route {
    if super::invoked_as_kojid(args) {
        return Route::Full;
    }
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.as_encoded_bytes();
        if a == b"--root" {
            if it.next().is_none() {
                return Route::Full;
            }
        } else if a.starts_with(b"--root=") {
        } else if a.starts_with(b"-") {
            return Route::Full;
        } else {
            return if a == b"run" { Route::Run } else { Route::Full };
        }
    }
    Route::Full
}

/// The full program: `$KOJI_ADJUTANT_FULL`, else next to this binary (a cargo build,
/// or a package that installs both in one directory), else in
/// `../libexec/koji-adjutant/` relative to it (`make install`).
pub fn full_program(front: &Path) -> Result<PathBuf, Vec<PathBuf>> {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os(FULL_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
        tried.push(p);
        return Err(tried);
    }
    if let Some(dir) = front.parent() {
        let candidates = [
            dir.join(FULL_NAME),
            dir.join("../libexec/koji-adjutant").join(FULL_NAME),
        ];
        for c in candidates {
            if is_executable(&c) {
                return Ok(c);
            }
            tried.push(c);
        }
    }
    Err(tried)
}

/// Entry point of the front binary (after the runtime helper dispatch).
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if route(&args) == Route::Run {
        if let Ok(cli) = FrontCli::try_parse_from(&args) {
            if cli.log.is_none() {
                super::quiet_logging();
                let FrontCommand::Run(a) = cli.command;
                return run::main(cli.root.unwrap_or_else(super::image::default_root), *a);
            }
        }
    }
    exec_full(&args)
}

/// Replace this process with the full program, same arguments and `argv[0]`.
fn exec_full(args: &[OsString]) -> ExitCode {
    let front = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let full = match full_program(&front) {
        Ok(p) => p,
        Err(tried) => {
            let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
            eprintln!(
                "koji-adjutant: the full program {FULL_NAME} is missing (looked for {}); \
                 install it with `make install`, or set {FULL_ENV}",
                tried.join(", ")
            );
            return ExitCode::from(exit::FAILURE);
        }
    };
    let err = super::exec_with_args(&full, args);
    eprintln!("koji-adjutant: executing {}: {err}", full.display());
    ExitCode::from(exit::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(args: &[&str]) -> Route {
        route(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn only_plain_run_stays_in_the_front() {
        assert_eq!(r(&["koji-adjutant", "run", "img", "true"]), Route::Run);
        assert_eq!(
            r(&["koji-adjutant", "--root", "/s", "run", "--rm", "i"]),
            Route::Run
        );
        assert_eq!(
            r(&["/usr/bin/koji-adjutant", "--root=/s", "run", "i"]),
            Route::Run
        );
        for full in [
            &["koji-adjutant"][..],
            &["koji-adjutant", "daemon", "--fg"],
            &["koji-adjutant", "image", "pull", "x"],
            &["koji-adjutant", "--help"],
            &["koji-adjutant", "--version"],
            &["koji-adjutant", "--log", "debug", "run", "i"],
            &["koji-adjutant", "--root"],
            &["koji-adjutant", "rebuild", "run"],
            &["/usr/sbin/kojid", "run"],
            &["kojid"],
        ] {
            assert_eq!(r(full), Route::Full, "{full:?}");
        }
    }

    #[test]
    fn the_front_parser_accepts_what_the_full_cli_accepts_for_run() {
        use clap::CommandFactory;
        FrontCli::command().debug_assert();
        let args = [
            "koji-adjutant",
            "--root",
            "/s",
            "run",
            "--rm",
            "-v",
            "/a:/b:ro",
            "img",
            "sh",
            "-c",
            "x",
        ];
        let front = FrontCli::try_parse_from(args).unwrap();
        let full = super::super::Cli::try_parse_from(args).unwrap();
        let FrontCommand::Run(f) = front.command;
        let super::super::Command::Run(g) = full.command else {
            panic!("the full CLI did not parse run")
        };
        assert_eq!(format!("{f:?}"), format!("{g:?}"));
        assert_eq!(front.root, full.root);
        // --log is parsed (and then sends the run to the full program)
        let front =
            FrontCli::try_parse_from(["koji-adjutant", "run", "--log", "debug", "i"]).unwrap();
        assert_eq!(front.log.as_deref(), Some("debug"));
        // help is the full program's
        assert!(FrontCli::try_parse_from(["koji-adjutant", "run", "--help"]).is_err());
    }

    #[test]
    fn the_full_program_is_found_next_to_the_front_or_in_libexec() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        let libexec = d.path().join("libexec/koji-adjutant");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&libexec).unwrap();
        let front = bin.join("koji-adjutant");
        // missing: every place tried is named
        let tried = full_program(&front).unwrap_err();
        assert_eq!(tried.len(), 2, "{tried:?}");
        assert!(tried[1].ends_with("libexec/koji-adjutant/koji-adjutant-full"));
        // not executable: not taken
        let installed = libexec.join(FULL_NAME);
        std::fs::write(&installed, "#!/bin/sh\n").unwrap();
        assert!(full_program(&front).is_err());
        std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            std::fs::canonicalize(full_program(&front).unwrap()).unwrap(),
            std::fs::canonicalize(&installed).unwrap()
        );
        // next to the front wins
        let sibling = bin.join(FULL_NAME);
        std::fs::write(&sibling, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&sibling, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(full_program(&front).unwrap(), sibling);
    }
}
