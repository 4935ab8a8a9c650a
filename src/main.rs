//! The `lossdiff` binary: parses arguments and hands over to the library's CLI layer.

use std::process::ExitCode;

// Counts heap bytes so `lossdiff bench attention` can report peak memory per kernel.
#[global_allocator]
static ALLOC: lossdiff::alloc::CountingAlloc = lossdiff::alloc::CountingAlloc;

fn main() -> ExitCode {
    match lossdiff::cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lossdiff: {}", lossdiff::cli::error_message(&err));
            ExitCode::from(2)
        }
    }
}
