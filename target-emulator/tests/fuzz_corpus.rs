//! Replays the committed seed corpus of every `cargo fuzz` target (`fuzz/corpus/<target>/`)
//! through the same entry points the fuzzers call, so plain `cargo test` on stable catches a
//! regression on any input a fuzzer once found interesting, crashes it found included. Bounded:
//! it reads only the committed files.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no seeds", dir.display());
    files
}

fn replay(target: &str, entry: fn(&[u8])) {
    for path in corpus(target) {
        let data = std::fs::read(&path).expect("a seed file");
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        eprintln!("{target}: {name} ({} bytes)", data.len());
        entry(&data);
    }
}

#[test]
fn pdu_corpus_replays_without_panic() {
    replay("pdu", target_emulator::fuzzing::pdu);
}

#[test]
fn cdb_corpus_replays_without_panic() {
    replay("cdb", target_emulator::fuzzing::cdb);
}

#[test]
fn login_corpus_replays_without_panic() {
    replay("login", target_emulator::fuzzing::login);
}
