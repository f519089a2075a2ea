//! A minimal binary whose only job is to be the runtime's re-exec helper, for
//! programs (and tests) that cannot call `adjutant_runtime::helper::dispatch` from
//! their own `main`: point `RuntimeConfig::helper_exe` at it.

fn main() {
    adjutant_runtime::helper::dispatch();
    eprintln!(
        "adjutant-runtime-helper: this binary only runs as `{} <kind>` (started by the runtime)",
        adjutant_runtime::helper::HELPER_ARG
    );
    std::process::exit(2);
}
