//! The `cohort` binary: parses the command line and hands over to `cohort::cli`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(cohort::cli::main(args));
}
