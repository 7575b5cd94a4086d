//! What a fuzz target's replay test reads: the target's committed seeds and any crash
//! cargo-fuzz wrote for it. Shared by the crates' replay tests through `#[path]`.

use std::path::{Path, PathBuf};

/// `fuzz/seeds/<target>/` (which must hold at least `min_seeds` files, or the seed corpus is
/// missing) and `fuzz/artifacts/<target>/`, each sorted by name; `manifest_dir` is the calling
/// crate's `CARGO_MANIFEST_DIR`.
pub fn inputs(target: &str, min_seeds: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    // Cargo's directory of the package under test, at run time: a test binary reused from a
    // build in another checkout still carries that checkout's compile-time path.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let fuzz = manifest_dir.join("../fuzz");
    let seeds = files(&fuzz.join("seeds").join(target));
    assert!(seeds.len() >= min_seeds, "the seed corpus is missing: {}", fuzz.display());
    (seeds, files(&fuzz.join("artifacts").join(target)))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.expect("a directory entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}
