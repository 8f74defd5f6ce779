//! Judges a kept chaos run again: `cargo run -p kcl-tests --bin chaos-verify -- target/chaos-runs/<run>`.
//! Prints the verifier's report; exits 1 when the run fails verification.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: chaos-verify RUN_DIR (a directory under target/chaos-runs)");
        std::process::exit(2);
    };
    match kcl_tests::verify::load_run(std::path::Path::new(&dir)) {
        Ok(history) => {
            let report = kcl_tests::verify::verify(&history);
            print!("{report}");
            std::process::exit(if report.passed() { 0 } else { 1 });
        }
        Err(error) => {
            eprintln!("chaos-verify: {error}");
            std::process::exit(2);
        }
    }
}
