//! The `koji-adjutant` binary: a thin layer over the library.

fn main() -> std::process::ExitCode {
    // Re-executed as the runtime's helper (container start, exec, user namespace jobs)?
    // Then this never returns. Must run before anything starts a thread.
    adjutant_runtime::helper::dispatch();
    koji_adjutant::cli::main()
}
