//! The `flowpilot` binary: parses the command line and hands over to [`flowpilot::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    flowpilot::cli::main()
}
