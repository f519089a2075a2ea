//! `koji-adjutant-full`: the daemon and the whole CLI, a thin layer over the library.
//! Users run it through the `koji-adjutant` front (src/main.rs), which executes it for
//! every command but a plain `run`.

fn main() -> std::process::ExitCode {
    // Re-executed as the runtime's helper (container start, exec, user namespace jobs)?
    // Then this never returns. Must run before anything starts a thread.
    adjutant_runtime::helper::dispatch();
    koji_adjutant::cli::main()
}
