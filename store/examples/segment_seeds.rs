//! Writes real metric segments, made by the store's own segment writer, as seeds of the
//! `segment` fuzz target: `cargo run -p quiver-store --features fuzzing --example segment_seeds
//! -- <dir>` (`fuzz/seeds.py` runs it with `fuzz/corpus/segment`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: segment_seeds <directory>")?;
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    for path in quiver_store::fuzzing::write_segment_seeds(&dir)? {
        println!("{}", path.display());
    }
    Ok(())
}
