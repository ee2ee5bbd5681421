//! The `snapfs` command: parse, run, print errors as one line, exit with a documented code.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
