//! The `koji-adjutant` binary: a thin layer over the library.

fn main() -> std::process::ExitCode {
    koji_adjutant::cli::main()
}
