//! Hidden helper subcommands of the re-executed binary.
//!
//! The runtime never forks the (multi-threaded, tokio) daemon. It re-executes its own
//! binary (`/proc/self/exe` by default) as `<exe> __adjutant-helper <kind>`; a fresh
//! single-threaded process then clones containers, joins their namespaces or enters a
//! user namespace. Binaries embedding this crate call [`dispatch`] first thing in
//! `main`, before any thread exists.

/// `argv[1]` of a helper invocation.
pub const HELPER_ARG: &str = "__adjutant-helper";

/// If this process was started as a helper, run it and exit; otherwise return.
pub fn dispatch() {
    let mut args = std::env::args_os();
    let _exe = args.next();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return;
    }
    let kind = args.next();
    let code = match kind.as_deref().and_then(|k| k.to_str()) {
        Some("launch") => crate::container::launch::helper_main(),
        Some("exec") => crate::container::exec::helper_main(),
        Some("userns") => crate::userns::job_main(),
        // The default seccomp filter as raw BPF (`struct sock_filter[]`) on stdout, for
        // tools that take one (`bwrap --seccomp FD`; benches/peers/start.sh).
        Some("seccomp-bpf") => crate::seccomp::write_default_bpf(&mut std::io::stdout()),
        other => {
            eprintln!("{HELPER_ARG}: unknown helper {other:?}");
            2
        }
    };
    std::process::exit(code)
}
