//! Command-line interface. `koji-adjutant <subcommand>`; invoked under the name
//! `kojid` it behaves as `koji-adjutant daemon`. Two binaries share it: the small
//! `koji-adjutant` front, which runs `run` itself and executes the full program
//! `koji-adjutant-full` for everything else ([`front`]), and the full program ([`main`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod check;
pub mod daemon;
pub mod front;
pub mod image;
mod progress;
pub mod rebuild;
pub mod run;

/// Exit codes scripts can rely on (documented in docs/cli.md, "Exit codes").
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A generic failure (the message says what failed).
    pub const FAILURE: u8 = 1;
    /// Bad usage: unknown flag, malformed argument, bad configuration.
    pub const USAGE: u8 = 2;
    /// The requested object (image, container, file) does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// The runtime itself failed to run a container command (podman uses 125).
    pub const RUNTIME: u8 = 125;
}

#[derive(Debug, Parser)]
#[command(
    name = "koji-adjutant",
    version,
    about = "A Koji build host daemon with its own rootless container runtime",
    after_help = "Run as `kojid` (the installed symlink) it is `koji-adjutant daemon`, with kojid's \
                  flags. Start with `koji-adjutant check`. Documentation: \
                  /usr/share/doc/koji-adjutant/ (operator-guide.md, troubleshooting.md, config.md)."
)]
pub struct Cli {
    /// Image and container store (default /var/lib/koji-adjutant as root,
    /// $XDG_DATA_HOME/koji-adjutant otherwise).
    #[arg(long, global = true, env = "KOJI_ADJUTANT_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Log filter (tracing EnvFilter syntax), e.g. `debug` or `adjutant_runtime=trace`.
    #[arg(long, global = true, env = "KOJI_ADJUTANT_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the build host daemon (kojid's flags; the binary run as `kojid` does this).
    Daemon(Box<crate::config::DaemonArgs>),
    /// Manage images in the store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Run a command in a new container.
    Run(Box<run::RunArgs>),
    /// Rebuild an SRPM (or a spec directory) locally in a buildroot container.
    Rebuild(Box<rebuild::RebuildArgs>),
    /// Check whether this host can run builds (OK/WARN/FAIL per line, with fixes).
    Check(Box<check::CheckArgs>),
}

pub use image::ImageCommand;

/// Entry point of the full program (`koji-adjutant-full`; the `koji-adjutant` front
/// hands it every command but a plain `run`, see [`front`]).
pub fn main() -> ExitCode {
    let args = kojid_argv(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    match cli.command {
        Command::Daemon(a) => daemon::run(*a, cli.root, cli.log),
        Command::Image(c) => {
            init_logging(cli.log.as_deref());
            image::run(cli.root.as_deref(), c)
        }
        Command::Check(args) => check::main(cli.root, cli.log, *args),
        Command::Run(args) => {
            init_logging(cli.log.as_deref());
            run::main(cli.root.unwrap_or_else(image::default_root), *args)
        }
        Command::Rebuild(args) => {
            init_logging(cli.log.as_deref());
            rebuild::main(cli.root.unwrap_or_else(image::default_root), *args)
        }
    }
}

/// Log to stderr; `--log`/`KOJI_ADJUTANT_LOG` is an EnvFilter. By default warnings and
/// errors only, through [`Warnings`] (no span registry to set up: `run` starts in a few
/// milliseconds and every one counts).
fn init_logging(filter: Option<&str>) {
    let Some(filter) = filter else {
        quiet_logging();
        return;
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// The default: warnings and errors on stderr, through [`Warnings`].
fn quiet_logging() {
    let _ = tracing::subscriber::set_global_default(Warnings);
}

/// A minimal subscriber: WARN and ERROR events as `LEVEL target: message k=v` lines.
/// (libcgroups warns about every controller this host lacks; that is not news.)
struct Warnings;

impl Warnings {
    fn wanted(m: &tracing::Metadata<'_>) -> bool {
        *m.level() <= tracing::Level::WARN && !m.target().starts_with("libcgroups")
    }
}

impl tracing::Subscriber for Warnings {
    fn register_callsite(
        &self,
        m: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if Self::wanted(m) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        Self::wanted(m)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                if f.name() == "message" {
                    let _ = write!(self.0, "{v:?}");
                } else {
                    let _ = write!(self.0, " {}={v:?}", f.name());
                }
            }
        }
        let mut line = Line(String::new());
        e.record(&mut line);
        let m = e.metadata();
        eprintln!("{} {}: {}", m.level(), m.target(), line.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Invoked as `kojid` (e.g. a symlink, so an existing kojid.service works unchanged),
/// behave as `koji-adjutant daemon`.
pub fn kojid_argv(mut args: Vec<OsString>) -> Vec<OsString> {
    if invoked_as_kojid(&args) {
        args.insert(1, OsString::from("daemon"));
    }
    args
}

/// Whether `argv[0]` names the program `kojid`.
pub fn invoked_as_kojid(args: &[OsString]) -> bool {
    args.first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "kojid")
}

/// Replace this process with `program`, run with `args` (`args[0]` as its `argv[0]`);
/// returns only on failure.
pub(crate) fn exec_with_args(program: &std::path::Path, args: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    if let Some(argv0) = args.first() {
        cmd.arg0(argv0);
    }
    cmd.args(args.iter().skip(1)).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand, and every argument of each, has help text: `--help` is
    /// complete. Returns what lacks it, as `path: what`.
    fn missing_help(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        if cmd.is_hide_set() {
            return;
        }
        if !path.is_empty() && cmd.get_about().is_none() {
            out.push(format!("{path}: no about"));
        }
        for a in cmd.get_arguments() {
            if a.is_hide_set() || ["help", "version"].contains(&a.get_id().as_str()) {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                out.push(format!("{path}: argument {} has no help", a.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let p = format!("{path} {}", sub.get_name());
            missing_help(sub, p.trim(), out);
        }
    }

    #[test]
    fn every_command_and_argument_has_help() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        missing_help(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "help text missing: {missing:#?}");
        // the check can fail
        let bare = clap::Command::new("x")
            .subcommand(clap::Command::new("y").arg(clap::Arg::new("z").long("z")));
        let mut m = Vec::new();
        missing_help(&bare, "", &mut m);
        assert_eq!(m, ["y: no about", "y: argument z has no help"]);
        // and every subcommand is listed in the top-level help
        let help = cmd.clone().render_long_help().to_string();
        for sub in ["daemon", "image", "run", "rebuild", "check"] {
            assert!(help.contains(sub), "{sub} missing from --help:\n{help}");
        }
    }

    #[test]
    fn kojid_name_means_daemon() {
        let a = kojid_argv(vec![
            "/usr/sbin/kojid".into(),
            "--fg".into(),
            "--force-lock".into(),
            "--verbose".into(),
        ]);
        let cli = Cli::try_parse_from(a).unwrap();
        match cli.command {
            Command::Daemon(d) => {
                assert!(d.fg && d.force_lock && d.verbose);
            }
            _ => panic!("not the daemon"),
        }
        let a = kojid_argv(vec![
            "koji-adjutant".into(),
            "daemon".into(),
            "-c".into(),
            "/x.conf".into(),
            "--maxjobs".into(),
            "3".into(),
        ]);
        let cli = Cli::try_parse_from(a).unwrap();
        match cli.command {
            Command::Daemon(d) => {
                assert_eq!(d.config.as_deref(), Some(std::path::Path::new("/x.conf")));
                assert_eq!(d.maxjobs, Some(3));
            }
            _ => panic!("not the daemon"),
        }
    }
}
