//! The content address of a job's results: one hash over the files a job left under its results
//! directory, so the buyer, the worker and the orchestrator can name the same output with 32
//! bytes and anyone holding the files can check them.
//!
//! The algorithm, as written down here and nowhere else: BLAKE3 keyed with
//! `derive_key("gpumesh 2026-11 job results v1")` over, for each regular file in strictly
//! increasing byte order of its relative path (components joined with `/`, no `.` or `..`):
//! the path's length in bytes (u64 LE) ‖ the path ‖ BLAKE3 of the file's content (32 bytes).
//! Directories add nothing of their own (an empty one is invisible); no files, no hash.

use std::sync::OnceLock;

const CONTEXT: &str = "gpumesh 2026-11 job results v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultsError {
    #[error("result path {0:?} is not a relative path of plain components joined with `/`")]
    BadPath(String),
    #[error("result path {path:?} comes after {previous:?}; files must be added in byte order")]
    OutOfOrder { previous: String, path: String },
}

/// Builds a results hash file by file.
#[derive(Debug, Clone)]
pub struct ResultsHasher {
    hasher: blake3::Hasher,
    last: Option<String>,
    files: u64,
}

impl Default for ResultsHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ResultsHasher {
    pub fn new() -> Self {
        static KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let key = KEY.get_or_init(|| blake3::derive_key(CONTEXT, b""));
        Self {
            hasher: blake3::Hasher::new_keyed(key),
            last: None,
            files: 0,
        }
    }

    /// Adds one file by its relative path and the BLAKE3 hash of its content.
    pub fn add(&mut self, path: &str, content_hash: &[u8; 32]) -> Result<(), ResultsError> {
        let plain = !path.is_empty()
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
        if !plain {
            return Err(ResultsError::BadPath(path.to_string()));
        }
        if let Some(previous) = &self.last
            && previous.as_bytes() >= path.as_bytes()
        {
            return Err(ResultsError::OutOfOrder {
                previous: previous.clone(),
                path: path.to_string(),
            });
        }
        self.hasher.update(&(path.len() as u64).to_le_bytes());
        self.hasher.update(path.as_bytes());
        self.hasher.update(content_hash);
        self.last = Some(path.to_string());
        self.files += 1;
        Ok(())
    }

    /// Files added so far.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// The results hash, or None when no file was added.
    pub fn finish(&self) -> Option<[u8; 32]> {
        (self.files > 0).then(|| *self.hasher.finalize().as_bytes())
    }
}

/// The results hash of in-memory files (any order; they are sorted here).
pub fn results_hash(files: &[(&str, &[u8])]) -> Result<Option<[u8; 32]>, ResultsError> {
    let mut sorted: Vec<_> = files.to_vec();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut h = ResultsHasher::new();
    for (path, content) in sorted {
        h.add(path, blake3::hash(content).as_bytes())?;
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_names_paths_and_contents_in_order() {
        let a = results_hash(&[("out.txt", b"hi\n"), ("logs/run.log", b"x")]).expect("ok");
        let b = results_hash(&[("logs/run.log", b"x"), ("out.txt", b"hi\n")]).expect("ok");
        assert_eq!(a, b, "order of listing does not matter");
        assert!(a.is_some());
        let renamed = results_hash(&[("out2.txt", b"hi\n"), ("logs/run.log", b"x")]);
        assert_ne!(renamed.expect("ok"), a);
        let changed = results_hash(&[("out.txt", b"hi!"), ("logs/run.log", b"x")]);
        assert_ne!(changed.expect("ok"), a);
        // Moving bytes between the path and the content cannot collide: lengths are bound.
        let shifted = results_hash(&[("ab", b"c")]).expect("ok");
        assert_ne!(shifted, results_hash(&[("a", b"bc")]).expect("ok"));
        assert_eq!(results_hash(&[]).expect("ok"), None, "no files, no hash");
    }

    #[test]
    fn bad_and_unordered_paths_are_refused() {
        let mut h = ResultsHasher::new();
        for bad in ["", "/etc/passwd", "../up", "a/./b", "a//b", "a\\b"] {
            assert!(
                matches!(h.add(bad, &[0; 32]), Err(ResultsError::BadPath(_))),
                "{bad}"
            );
        }
        h.add("b", &[0; 32]).expect("first");
        assert!(matches!(
            h.add("a", &[0; 32]),
            Err(ResultsError::OutOfOrder { .. })
        ));
        assert!(matches!(
            h.add("b", &[0; 32]),
            Err(ResultsError::OutOfOrder { .. })
        ));
        assert_eq!(h.files(), 1);
    }
}
