//! Regenerates `assets/watermark.png`, the default mark compiled into the binary:
//! `cargo run --example make_watermark [TEXT] [OUT]`.
//!
//! The mark is the text drawn with the bundled DejaVu Sans Mono Bold font (white with a dark
//! outline, so it shows on light and dark photos) on a transparent background.

fn main() {
    let mut args = std::env::args().skip(1);
    let text = args.next().unwrap_or_else(|| "© renditions".to_string());
    let out = args
        .next()
        .unwrap_or_else(|| "assets/watermark.png".to_string());
    let mark = match renditions::stages::render_text(&text, 160.0) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("make_watermark: {e}");
            std::process::exit(2);
        }
    };
    let img = image::RgbaImage::from_raw(mark.width, mark.height, mark.data);
    match img.map(|i| i.save(&out)) {
        Some(Ok(())) => println!("wrote {out} ({}x{})", mark.width, mark.height),
        Some(Err(e)) => {
            eprintln!("make_watermark: {e}");
            std::process::exit(1);
        }
        None => std::process::exit(1),
    }
}
