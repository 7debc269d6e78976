//! Prints the commented platform TOML of DTBs:
//! `cargo run -p dmabuf-dt --example dt_import -- BOARD.dtb...`.
fn main() {
    for a in std::env::args().skip(1) {
        match dmabuf_dt::import_path(std::path::Path::new(&a)) {
            Ok(i) => print!("{}", i.to_commented_toml()),
            Err(e) => eprintln!("error: {e}"),
        }
    }
}
