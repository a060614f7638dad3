//! `renditions`: the command-line front end of the rendition pipeline (see `renditions::cli`).

fn main() {
    let code = renditions::cli::run(std::env::args().skip(1).collect());
    std::process::exit(code);
}
