//! Results and checkpoints in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2,
//! anything that speaks the S3 API with SigV4): the same content-addressed layout as
//! [`LocalDirStore`](super::results::LocalDirStore), under a key prefix:
//!
//! ```text
//! <prefix>/<hash>/files/<path>                 a job's result files
//! <prefix>/<hash>/manifest.json                lease, files with sizes and BLAKE3 hashes
//! <prefix>/checkpoints/<hash>/files/<path>     a checkpoint directory's files
//! <prefix>/checkpoints/<hash>/manifest.json
//! ```
//!
//! At start the daemon writes `<prefix>/.gpumesh-write-check`, so that a missing bucket or a
//! key that may not write stops it before it takes a job.
//!
//! S3 has no rename, so completeness is the manifest: it is written last, after every file was
//! uploaded and checked against the hash it was read with; a hash whose manifest exists is
//! whole, and storing it again is a no-op. Large files go up in multipart uploads (an upload
//! that fails is aborted, leaving nothing). A restore trusts nothing it fetched: every path the
//! manifest names must be a plain relative path, and the files must hash to the address asked
//! for before they replace the job's directory.
//!
//! The requests (signing, retries with backoff, multipart) are `object_store`'s.

use super::config::S3Config;
use super::results::{
    Collected, ResultStore, ResultsError, manifest, place_checkpoint, plain_path, restore_temp,
};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use gpumesh_protocol::hex;
use gpumesh_protocol::wire::LeaseId;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read from a file per write to the upload (a multipart upload starts past the
/// writer's 10 MiB buffer).
const CHUNK: usize = 1 << 20;

pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    /// The key prefix, without slashes at either end; may be empty.
    prefix: String,
}

/// What `manifest.json` says (the fields a restore reads).
#[derive(Deserialize)]
struct Manifest {
    hash: String,
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    path: String,
}

fn store_err(what: &str, e: impl std::fmt::Display) -> ResultsError {
    ResultsError::Store(format!("{what}: {e}"))
}

/// `s3://bucket/some/prefix/` → (`bucket`, `some/prefix`).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        format!("{url:?} is not an s3:// URL (s3://bucket or s3://bucket/prefix)")
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url:?} names no bucket (s3://bucket/prefix)"));
    }
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() && !plain_path(prefix) {
        return Err(format!(
            "{url:?}: the prefix must be plain names separated by single slashes"
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

impl S3Store {
    /// Builds the client and checks, by writing one small object (`<prefix>/.gpumesh-write-check`),
    /// that the bucket is there and the credentials may write to it, so that a wrong setting
    /// stops the daemon at start rather than losing a buyer's results at a job's end.
    pub async fn connect(config: &S3Config) -> Result<Self, ResultsError> {
        let (bucket, prefix) = parse_url(&config.url).map_err(ResultsError::Store)?;
        let builder = Self::builder(config, &bucket)?;
        let build = |max_retries, retry_timeout| {
            builder
                .clone()
                .with_retry(RetryConfig {
                    max_retries,
                    retry_timeout,
                    ..RetryConfig::default()
                })
                .build()
                .map_err(|e| store_err("S3 results store settings", e))
        };
        let mut store = S3Store {
            // The check gives up within seconds; jobs' uploads retry for longer.
            store: Arc::new(build(2, Duration::from_secs(10))?),
            bucket,
            prefix,
        };
        let check = store.key(".gpumesh-write-check")?;
        let wrote = store
            .store
            .put(&check, PutPayload::from_static(b"gpumesh worker\n"))
            .await;
        let where_ = config.endpoint.as_deref().unwrap_or("AWS");
        match wrote {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ResultsError::Store(format!(
                    "bucket {:?} does not exist at {where_}: create it, or fix [results] url",
                    store.bucket
                )));
            }
            Err(e) => {
                return Err(ResultsError::Store(format!(
                    "cannot write {} at {where_}: {e} (check [results] endpoint, region and the \
                     credentials: access_key_id with secret_access_key_file, or \
                     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                    store.url(".gpumesh-write-check").trim_end_matches('/')
                )));
            }
        }
        store.store = Arc::new(build(8, Duration::from_secs(120))?);
        Ok(store)
    }

    /// The client's settings (the secret file read once), without its retry policy.
    fn builder(config: &S3Config, bucket: &str) -> Result<AmazonS3Builder, ResultsError> {
        // The environment's AWS_* settings first (credentials, session token, a role), the
        // file's on top.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(300))
                    .with_allow_http(
                        config
                            .endpoint
                            .as_deref()
                            .is_some_and(|e| e.starts_with("http://")),
                    ),
            );
        if let Some(endpoint) = &config.endpoint {
            // S3-compatible services are addressed by path (`endpoint/bucket/key`).
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let (Some(id), Some(file)) = (&config.access_key_id, &config.secret_access_key_file) {
            let secret = std::fs::read_to_string(file).map_err(|e| {
                ResultsError::Store(format!("secret_access_key_file {}: {e}", file.display()))
            })?;
            let secret = secret.trim();
            if secret.is_empty() {
                return Err(ResultsError::Store(format!(
                    "secret_access_key_file {} is empty",
                    file.display()
                )));
            }
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        Ok(builder)
    }

    /// `<prefix>/<rest>`.
    fn under_prefix(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// `<prefix>/<rest>` as a key.
    fn key(&self, rest: &str) -> Result<Key, ResultsError> {
        Key::parse(self.under_prefix(rest)).map_err(|_| ResultsError::BadPath(rest.to_string()))
    }

    fn url(&self, base: &str) -> String {
        format!("s3://{}/{}/", self.bucket, self.under_prefix(base))
    }

    /// Uploads one file, hashing what it reads; a file that no longer hashes as collected is
    /// not stored (the upload is aborted).
    async fn upload(&self, from: &Path, to: Key, blake3: [u8; 32]) -> Result<(), ResultsError> {
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(|e| store_err(&from.display().to_string(), e))?;
        let mut writer = BufWriter::new(self.store.clone(), to.clone());
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; CHUNK];
        let outcome: Result<(), ResultsError> = async {
            loop {
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(|e| store_err(&from.display().to_string(), e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                writer
                    .write_all(&buf[..n])
                    .await
                    .map_err(|e| store_err(&format!("uploading {to}"), e))?;
            }
            if *hasher.finalize().as_bytes() != blake3 {
                return Err(ResultsError::Store(format!(
                    "{} changed while it was stored",
                    from.display()
                )));
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => writer
                .shutdown()
                .await
                .map_err(|e| store_err(&format!("uploading {to}"), e)),
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Stores the collected files under `<under><hash>/files/` and then the manifest; a hash
    /// whose manifest exists is already whole.
    async fn put_under(
        &self,
        under: &str,
        lease: LeaseId,
        root: &Path,
        collected: &Collected,
    ) -> Result<String, ResultsError> {
        let Some(hash) = collected.hash else {
            return Ok(String::new());
        };
        let base = format!("{under}{}", hex(&hash));
        let manifest_key = self.key(&format!("{base}/manifest.json"))?;
        match self.store.head(&manifest_key).await {
            Ok(_) => return Ok(self.url(&base)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(&format!("looking up {manifest_key}"), e)),
        }
        for file in &collected.files {
            let key = self.key(&format!("{base}/files/{}", file.path))?;
            self.upload(&root.join(&file.path), key, file.blake3)
                .await?;
        }
        let manifest = manifest(lease, hash, collected);
        self.store
            .put(
                &manifest_key,
                PutPayload::from(manifest.to_string().into_bytes()),
            )
            .await
            .map_err(|e| store_err(&format!("writing {manifest_key}"), e))?;
        Ok(self.url(&base))
    }

    /// One object of checkpoint `name`; a missing one makes the checkpoint missing.
    async fn fetch(&self, key: &Key, name: &str) -> Result<object_store::GetResult, ResultsError> {
        match self.store.get(key).await {
            Ok(got) => Ok(got),
            Err(object_store::Error::NotFound { .. }) => {
                Err(ResultsError::CheckpointMissing(name.to_string()))
            }
            Err(e) => Err(store_err(&format!("reading {key}"), e)),
        }
    }

    /// Downloads a checkpoint's files into `temp` (a new directory), as its manifest lists them.
    async fn download(&self, base: &str, name: &str, temp: &Path) -> Result<(), ResultsError> {
        let manifest_key = self.key(&format!("{base}/manifest.json"))?;
        let manifest = self
            .fetch(&manifest_key, name)
            .await?
            .bytes()
            .await
            .map_err(|e| store_err(&format!("reading {manifest_key}"), e))?;
        let manifest: Manifest = serde_json::from_slice(&manifest)
            .map_err(|e| store_err(&format!("{manifest_key} is not a manifest"), e))?;
        if manifest.hash != name {
            return Err(ResultsError::CheckpointCorrupt {
                hash: name.to_string(),
                got: format!("a manifest for {}", manifest.hash),
            });
        }
        make_dir(temp).await?;
        for file in &manifest.files {
            let rel = file.path.as_str();
            if !plain_path(rel) {
                return Err(ResultsError::BadPath(rel.to_string()));
            }
            let to = temp.join(rel);
            let mut at = temp.to_path_buf();
            let parts: Vec<&str> = rel.split('/').collect();
            for part in &parts[..parts.len() - 1] {
                at.push(part);
                if !at.is_dir() {
                    make_dir(&at).await?;
                }
            }
            let key = self.key(&format!("{base}/files/{rel}"))?;
            let got = self.fetch(&key, name).await?;
            let mut out = tokio::fs::File::create(&to)
                .await
                .map_err(|e| store_err(&to.display().to_string(), e))?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| store_err(&format!("reading {key}"), e))?;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| store_err(&to.display().to_string(), e))?;
            }
            out.flush()
                .await
                .map_err(|e| store_err(&to.display().to_string(), e))?;
            set_mode(&to, 0o666).await?;
        }
        Ok(())
    }
}

/// A directory the job inside its container may write, whatever user it runs as.
async fn make_dir(dir: &Path) -> Result<(), ResultsError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| store_err(&dir.display().to_string(), e))?;
    set_mode(dir, 0o777).await
}

async fn set_mode(path: &Path, mode: u32) -> Result<(), ResultsError> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(|e| store_err(&path.display().to_string(), e))
}

impl ResultStore for S3Store {
    fn put<'a>(
        &'a self,
        lease: LeaseId,
        root: &'a Path,
        collected: &'a Collected,
    ) -> BoxFuture<'a, Result<String, ResultsError>> {
        Box::pin(self.put_under("", lease, root, collected))
    }

    fn put_checkpoint<'a>(
        &'a self,
        lease: LeaseId,
        root: &'a Path,
        collected: &'a Collected,
    ) -> BoxFuture<'a, Result<String, ResultsError>> {
        Box::pin(self.put_under("checkpoints/", lease, root, collected))
    }

    fn get_checkpoint<'a>(
        &'a self,
        hash: [u8; 32],
        into: &'a Path,
    ) -> BoxFuture<'a, Result<Collected, ResultsError>> {
        Box::pin(async move {
            let name = hex(&hash);
            let temp = restore_temp(into, hash)?;
            let fetched = self
                .download(&format!("checkpoints/{name}"), &name, &temp)
                .await;
            let into = into.to_path_buf();
            tokio::task::spawn_blocking(move || place_checkpoint(fetched, &temp, hash, &into))
                .await
                .map_err(|e| ResultsError::Store(e.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls_name_a_bucket_and_a_plain_prefix() {
        assert_eq!(
            parse_url("s3://results").expect("bucket"),
            ("results".into(), String::new())
        );
        assert_eq!(
            parse_url("s3://results/gpumesh/worker-1/").expect("prefix"),
            ("results".into(), "gpumesh/worker-1".into())
        );
        for bad in [
            "http://x/y",
            "s3://",
            "s3:///p",
            "s3://b/a//c",
            "s3://b/../c",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
