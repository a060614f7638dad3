//! `renditions`: the command-line front end of the rendition pipeline (see `renditions::cli`).

fn main() {
    let code = renditions::run_cli(std::env::args().skip(1).collect());
    std::process::exit(code);
}
