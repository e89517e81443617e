//! A job's results: the files its spec names under the results directory, their content address
//! (`gpumesh_protocol::results`), and where they are kept afterwards. Stores are pluggable
//! ([`ResultStore`]); the local-directory one is here, the S3-compatible one in `super::s3`.
//! Checkpoints (snapshots of a job's state directory, see `gpumesh_protocol::wire::CheckpointSpec`)
//! go to the same store under the same content address, and come back out only when what was
//! fetched hashes to the address asked for.
//!
//! Symbolic links are never followed: a job could point one at any file of the host, which the
//! daemon (outside the container) would otherwise read and publish. They are skipped and named.

use futures_util::future::BoxFuture;
use gpumesh_protocol::ResultsHasher;
use gpumesh_protocol::hex;
use gpumesh_protocol::wire::LeaseId;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One result file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFile {
    /// Relative to the results directory, `/`-separated.
    pub path: String,
    pub size: u64,
    pub blake3: [u8; 32],
}

/// What a results directory held.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Collected {
    /// Sorted by path (bytes).
    pub files: Vec<ResultFile>,
    pub hash: Option<[u8; 32]>,
    /// Listed paths that did not exist.
    pub missing: Vec<String>,
    /// Entries skipped: symbolic links and anything that is not a plain file or directory.
    pub skipped: Vec<String>,
}

impl Collected {
    /// A few words for the job's exit status.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} result file{}",
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" }
        )];
        if !self.missing.is_empty() {
            parts.push(format!("missing: {}", self.missing.join(", ")));
        }
        if !self.skipped.is_empty() {
            parts.push(format!(
                "skipped (links or special files): {}",
                self.skipped.join(", ")
            ));
        }
        parts.join("; ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("reading results at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("result path {0:?} is not a plain relative path")]
    BadPath(String),
    #[error("results store: {0}")]
    Store(String),
    #[error("checkpoint {0} is not in the store (never stored, or not completely)")]
    CheckpointMissing(String),
    #[error("checkpoint {hash} fails its hash check: its files hash to {got}")]
    CheckpointCorrupt { hash: String, got: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Hashes a file's content with BLAKE3, streaming.
fn hash_file(path: &Path) -> Result<([u8; 32], u64), ResultsError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((*hasher.finalize().as_bytes(), size))
}

fn walk(
    root: &Path,
    rel: &str,
    out: &mut Vec<(String, PathBuf)>,
    skipped: &mut Vec<String>,
) -> Result<(), ResultsError> {
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
    let kind = meta.file_type();
    if kind.is_file() {
        out.push((rel.to_string(), path));
    } else if kind.is_dir() {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(io(&path))? {
            let entry = entry.map_err(io(&path))?;
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => skipped.push(format!("{rel}/{}", name.to_string_lossy())),
            }
        }
        for name in names {
            walk(root, &format!("{rel}/{name}"), out, skipped)?;
        }
    } else {
        skipped.push(rel.to_string());
    }
    Ok(())
}

/// A relative path of plain names separated by single slashes (no `.` or `..`, nothing empty).
pub(crate) fn plain_path(rel: &str) -> bool {
    !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Collects and hashes the listed paths (files, or directories taken whole) under `root`.
pub fn collect(root: &Path, listed: &[String]) -> Result<Collected, ResultsError> {
    let mut found = Vec::new();
    let mut collected = Collected::default();
    for rel in listed {
        let rel = rel.trim_matches('/');
        if !plain_path(rel) {
            return Err(ResultsError::BadPath(rel.to_string()));
        }
        // Refuse to walk through a link anywhere on the way down.
        let mut at = root.to_path_buf();
        let mut through_link = false;
        for part in rel.split('/') {
            at.push(part);
            if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                through_link = true;
                break;
            }
        }
        if through_link {
            collected.skipped.push(rel.to_string());
            continue;
        }
        if std::fs::symlink_metadata(root.join(rel)).is_err() {
            collected.missing.push(rel.to_string());
            continue;
        }
        walk(root, rel, &mut found, &mut collected.skipped)?;
    }
    found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    found.dedup_by(|a, b| a.0 == b.0);
    let mut hasher = ResultsHasher::new();
    for (rel, path) in found {
        let (blake3, size) = hash_file(&path)?;
        hasher
            .add(&rel, &blake3)
            .map_err(|_| ResultsError::BadPath(rel.clone()))?;
        collected.files.push(ResultFile {
            path: rel,
            size,
            blake3,
        });
    }
    collected.hash = hasher.finish();
    Ok(collected)
}

/// Collects a whole directory (every entry under `root`), as a checkpoint is hashed.
pub fn collect_dir(root: &Path) -> Result<Collected, ResultsError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io(root))? {
        let entry = entry.map_err(io(root))?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(name) => return Err(ResultsError::BadPath(name.to_string_lossy().into_owned())),
        }
    }
    collect(root, &names)
}

/// Where results (and checkpoints) are kept once a job ends.
pub trait ResultStore: Send + Sync {
    /// Stores the collected files (read from `root`) under their content hash and returns where
    /// they are (a path or URL). Storing the same hash twice is a no-op.
    fn put<'a>(
        &'a self,
        lease: LeaseId,
        root: &'a Path,
        collected: &'a Collected,
    ) -> BoxFuture<'a, Result<String, ResultsError>>;

    /// Stores a checkpoint (the collected files of a checkpoint directory, read from `root`)
    /// under its content hash; it is visible under that hash only once complete.
    fn put_checkpoint<'a>(
        &'a self,
        lease: LeaseId,
        root: &'a Path,
        collected: &'a Collected,
    ) -> BoxFuture<'a, Result<String, ResultsError>>;

    /// Fetches the checkpoint stored under `hash` into `into` (replacing what is there), after
    /// checking that its files hash to `hash`; on any failure `into` is left as it was.
    fn get_checkpoint<'a>(
        &'a self,
        hash: [u8; 32],
        into: &'a Path,
    ) -> BoxFuture<'a, Result<Collected, ResultsError>>;
}

/// Results in a local directory: `<dir>/<hash in hex>/` holds `files/` (the results) and a
/// `manifest.json` (lease, files with sizes and BLAKE3 hashes), written to a temporary name and
/// renamed, so a directory named by a hash is always complete.
pub struct LocalDirStore {
    pub dir: PathBuf,
}

impl LocalDirStore {
    pub fn new(dir: PathBuf) -> Self {
        LocalDirStore { dir }
    }

    /// Where checkpoints are: `<dir>/checkpoints/<hash in hex>/` holds `files/` (the
    /// directory's content) and `manifest.json`.
    fn checkpoints(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    /// Copies the collected files into `<dir>/<hash>/<files>` through a temporary name, checking
    /// each copy against its hash, with a manifest beside them.
    fn put_blocking(
        dir: &Path,
        files: &str,
        lease: LeaseId,
        root: &Path,
        collected: &Collected,
    ) -> Result<String, ResultsError> {
        let Some(hash) = collected.hash else {
            return Ok(String::new());
        };
        let name = hex(&hash);
        let target = dir.join(&name);
        if target.is_dir() {
            return Ok(target.display().to_string());
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let temp = dir.join(format!(
            ".{name}.{}.{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&temp);
        for file in &collected.files {
            let to = temp.join(files).join(&file.path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let from = root.join(&file.path);
            std::fs::copy(&from, &to).map_err(io(&from))?;
            // The job may not have left the file as hashed (it has exited, but check anyway).
            let (again, _) = hash_file(&to)?;
            if again != file.blake3 {
                let _ = std::fs::remove_dir_all(&temp);
                return Err(ResultsError::Store(format!(
                    "{} changed while it was stored",
                    file.path
                )));
            }
        }
        let manifest = manifest(lease, hash, collected);
        let manifest_path = temp.join("manifest.json");
        std::fs::write(&manifest_path, manifest.to_string()).map_err(io(&manifest_path))?;
        match std::fs::rename(&temp, &target) {
            Ok(()) => {}
            // Another job stored the same content first.
            Err(_) if target.is_dir() => {
                let _ = std::fs::remove_dir_all(&temp);
            }
            Err(e) => return Err(io(&target)(e)),
        }
        Ok(target.display().to_string())
    }

    fn get_checkpoint_blocking(
        checkpoints: &Path,
        hash: [u8; 32],
        into: &Path,
    ) -> Result<Collected, ResultsError> {
        let name = hex(&hash);
        let source = checkpoints.join(&name).join("files");
        if !source.is_dir() {
            return Err(ResultsError::CheckpointMissing(name));
        }
        let temp = restore_temp(into, hash)?;
        let copied = copy_tree(&source, &temp);
        place_checkpoint(copied, &temp, hash, into)
    }
}

/// What a store keeps beside a hash's files: the lease that wrote them, the hash, and each
/// file's path, size and BLAKE3.
pub(crate) fn manifest(lease: LeaseId, hash: [u8; 32], collected: &Collected) -> serde_json::Value {
    serde_json::json!({
        "lease": lease.lease.to_string(),
        "lease_nonce": lease.nonce,
        "hash": hex(&hash),
        "files": collected.files.iter().map(|f| serde_json::json!({
            "path": f.path, "size": f.size, "blake3": hex(&f.blake3),
        })).collect::<Vec<_>>(),
    })
}

/// Where a checkpoint is fetched to before it is checked: beside the job's directory (same
/// file system, so the rename into place is atomic), emptied first.
pub(crate) fn restore_temp(into: &Path, hash: [u8; 32]) -> Result<PathBuf, ResultsError> {
    let parent = into
        .parent()
        .ok_or_else(|| ResultsError::BadPath(into.display().to_string()))?;
    let temp = parent.join(format!(".restore-{}", hex(&hash)));
    let _ = std::fs::remove_dir_all(&temp);
    Ok(temp)
}

/// After a checkpoint was fetched into `temp` (`fetched`): puts it in place of `into` only if
/// its files hash to `hash` and nothing in it was skipped; on any failure `temp` is removed and
/// `into` left as it was.
pub(crate) fn place_checkpoint(
    fetched: Result<(), ResultsError>,
    temp: &Path,
    hash: [u8; 32],
    into: &Path,
) -> Result<Collected, ResultsError> {
    let collected = match fetched.and_then(|()| collect_dir(temp)) {
        Ok(c) if c.hash == Some(hash) && c.skipped.is_empty() => c,
        Ok(c) => {
            let _ = std::fs::remove_dir_all(temp);
            return Err(ResultsError::CheckpointCorrupt {
                hash: hex(&hash),
                got: c
                    .hash
                    .map_or_else(|| "nothing (no files)".into(), |h| hex(&h)),
            });
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(temp);
            return Err(e);
        }
    };
    if std::fs::symlink_metadata(into).is_ok() {
        std::fs::remove_dir_all(into).map_err(io(into))?;
    }
    std::fs::rename(temp, into).map_err(io(into))?;
    Ok(collected)
}

/// Copies plain files and directories from `from` into a new directory `to` (links and special
/// files are left out, so the hash check that follows fails on them).
fn copy_tree(from: &Path, to: &Path) -> Result<(), ResultsError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).map_err(io(to))?;
    // The job inside its container may run as any user.
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o777)).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(io(&src))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o666))
                .map_err(io(&dst))?;
        }
    }
    Ok(())
}

impl LocalDirStore {
    /// [`Self::put_blocking`] on the blocking pool (the copy and its hash checks are file I/O).
    async fn put_off_thread(
        dir: PathBuf,
        files: &'static str,
        lease: LeaseId,
        root: &Path,
        collected: &Collected,
    ) -> Result<String, ResultsError> {
        let (root, collected) = (root.to_path_buf(), collected.clone());
        tokio::task::spawn_blocking(move || {
            Self::put_blocking(&dir, files, lease, &root, &collected)
        })
        .await
        .map_err(|e| ResultsError::Store(e.to_string()))?
    }
}

impl ResultStore for LocalDirStore {
    fn put<'a>(
        &'a self,
        lease: LeaseId,
        root: &'a Path,
        collected: &'a Collected,
    ) -> BoxFuture<'a, Result<String, ResultsError>> {
        Box::pin(Self::put_off_thread(
            self.dir.clone(),
            "files",
            lease,
            root,
            collected,
        ))
    }

    fn put_checkpoint<'a>(
        &'a self,
        lease: LeaseId,
        root: &'a Path,
        collected: &'a Collected,
    ) -> BoxFuture<'a, Result<String, ResultsError>> {
        Box::pin(Self::put_off_thread(
            self.checkpoints(),
            "files",
            lease,
            root,
            collected,
        ))
    }

    fn get_checkpoint<'a>(
        &'a self,
        hash: [u8; 32],
        into: &'a Path,
    ) -> BoxFuture<'a, Result<Collected, ResultsError>> {
        Box::pin(async move {
            let (dir, into) = (self.checkpoints(), into.to_path_buf());
            tokio::task::spawn_blocking(move || Self::get_checkpoint_blocking(&dir, hash, &into))
                .await
                .map_err(|e| ResultsError::Store(e.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpumesh_protocol::Key;
    use gpumesh_protocol::results::results_hash;

    #[tokio::test]
    async fn results_are_hashed_as_documented_and_stored_by_content() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().join("results");
        std::fs::create_dir_all(root.join("ckpt/sub")).expect("dirs");
        std::fs::write(root.join("out.txt"), b"hello\n").expect("write");
        std::fs::write(root.join("ckpt/a.bin"), [1u8, 2, 3]).expect("write");
        std::fs::write(root.join("ckpt/sub/b.bin"), b"").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", root.join("ckpt/leak")).expect("link");
        std::os::unix::fs::symlink("/etc", root.join("etc")).expect("link");

        let listed = vec![
            "out.txt".into(),
            "ckpt".into(),
            "gone.txt".into(),
            "etc/passwd".into(),
        ];
        let got = collect(&root, &listed).expect("collect");
        let want = results_hash(&[
            ("out.txt", b"hello\n"),
            ("ckpt/a.bin", &[1, 2, 3]),
            ("ckpt/sub/b.bin", b""),
        ])
        .expect("hash");
        assert_eq!(
            got.hash, want,
            "the protocol's algorithm over the same files"
        );
        assert_eq!(
            got.files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>(),
            vec!["ckpt/a.bin", "ckpt/sub/b.bin", "out.txt"]
        );
        assert_eq!(got.missing, vec!["gone.txt"]);
        assert_eq!(got.skipped, vec!["ckpt/leak", "etc/passwd"]);
        assert!(matches!(
            collect(&root, &["../up".into()]),
            Err(ResultsError::BadPath(_))
        ));
        assert_eq!(collect(&root, &[]).expect("none").hash, None);

        let store = LocalDirStore::new(dir.path().join("store"));
        let lease = LeaseId {
            lease: Key([1; 32]),
            nonce: 2,
        };
        let at = store.put(lease, &root, &got).await.expect("put");
        let at = PathBuf::from(at);
        assert!(at.ends_with(hex(&want.expect("some"))));
        assert_eq!(
            std::fs::read(at.join("files/out.txt")).expect("copied"),
            b"hello\n"
        );
        assert!(!at.join("files/ckpt/leak").exists());
        let manifest = std::fs::read_to_string(at.join("manifest.json")).expect("manifest");
        assert!(manifest.contains("\"ckpt/sub/b.bin\""), "{manifest}");
        // Twice is fine.
        store.put(lease, &root, &got).await.expect("again");
    }

    #[tokio::test]
    async fn checkpoints_come_back_only_whole_and_as_hashed() {
        let dir = tempfile::tempdir().expect("dir");
        let ckpt = dir.path().join("ckpt");
        std::fs::create_dir_all(ckpt.join("opt")).expect("dirs");
        std::fs::write(ckpt.join("state"), b"12 0.5 0.25\n").expect("write");
        std::fs::write(ckpt.join("opt/m.bin"), [9u8; 100]).expect("write");
        let got = collect_dir(&ckpt).expect("collect");
        let hash = got.hash.expect("files");
        assert_eq!(
            got.hash,
            results_hash(&[("state", b"12 0.5 0.25\n"), ("opt/m.bin", &[9u8; 100])]).expect("hash")
        );
        let store = LocalDirStore::new(dir.path().join("store"));
        let lease = LeaseId {
            lease: Key([1; 32]),
            nonce: 2,
        };
        store
            .put_checkpoint(lease, &ckpt, &got)
            .await
            .expect("stored");

        // Restored into a directory that has other content: replaced whole.
        let into = dir.path().join("job/scratch/ckpt");
        std::fs::create_dir_all(&into).expect("dirs");
        std::fs::write(into.join("stale"), b"x").expect("write");
        let back = store.get_checkpoint(hash, &into).await.expect("restored");
        assert_eq!(back.hash, Some(hash));
        assert_eq!(
            std::fs::read(into.join("state")).expect("state"),
            b"12 0.5 0.25\n"
        );
        assert!(!into.join("stale").exists());

        // Never stored (or not completely: only a complete one has its name).
        let err = store.get_checkpoint([7; 32], &into).await.unwrap_err();
        assert!(matches!(err, ResultsError::CheckpointMissing(_)), "{err}");

        // A stored file changed: refused, and what was there is left alone.
        let stored = dir.path().join("store/checkpoints").join(hex(&hash));
        std::fs::write(stored.join("files/state"), b"99 0.5 0.25\n").expect("corrupt");
        let err = store.get_checkpoint(hash, &into).await.unwrap_err();
        assert!(err.to_string().contains("fails its hash check"), "{err}");
        assert_eq!(
            std::fs::read(into.join("state")).expect("kept"),
            b"12 0.5 0.25\n"
        );
        assert!(
            !dir.path()
                .join(format!("job/scratch/.restore-{}", hex(&hash)))
                .exists()
        );
    }
}
