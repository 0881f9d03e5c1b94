//! Writes the seed corpus: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    fairlead_fuzz::seeds::write_all(&root);
}
