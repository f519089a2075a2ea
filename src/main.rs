//! The `koji-adjutant` command: a small front that starts containers (`run`) itself
//! and hands every other command to `koji-adjutant-full` (src/full_main.rs). It links
//! only what `run` needs, so that it starts as fast as the container does; see
//! `koji_adjutant::cli::front`.

fn main() -> std::process::ExitCode {
    // Re-executed as the runtime's helper (`run` cleans up rootless upper dirs with
    // one)? Then this never returns. Must run before anything starts a thread.
    adjutant_runtime::helper::dispatch();
    koji_adjutant::cli::front::main()
}
