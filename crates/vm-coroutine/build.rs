//! Declares the `loom` cfg so that `--cfg loom` model builds are expected, not warned about.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
