//! The `athena` binary: parses the command line and runs it. Errors are one line on stderr and
//! a non-zero exit code; never a panic or a backtrace.

fn main() -> std::process::ExitCode {
    athena::cli::main()
}
