//! The S3-compatible results store against a real S3 service in its own process: moto's server
//! (`moto_server`, PyPI's `moto[server]`; `scripts/services.sh` installs it), with its request
//! authentication on, so every request must carry a SigV4 signature that checks against an IAM
//! user's secret key, as AWS checks it. The tests set the service up the way an operator would:
//! an IAM user, its access key, a policy, a bucket. Without `moto_server` they fail and say what
//! to install.

mod common;

use common::*;
use futures_util::StreamExt;
use gpumesh_protocol::Key;
use gpumesh_protocol::hex;
use gpumesh_protocol::results::results_hash;
use gpumesh_protocol::wire::LeaseId;
use gpumesh_worker::daemon::config::{ResultsConfig, RuntimeKind, S3Config};
use gpumesh_worker::daemon::results::{ResultStore, ResultsError, collect, collect_dir};
use gpumesh_worker::daemon::s3::S3Store;
use gpumesh_worker::daemon::{DaemonError, config::Config};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectKey;
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Requests the service takes before it checks signatures: the setup's three IAM calls and
/// the bucket's creation.
const SETUP_REQUESTS: u32 = 4;

/// A running S3 service with one bucket, one IAM user allowed everything on S3, and that
/// user's key.
struct S3Service {
    child: tokio::process::Child,
    endpoint: String,
    key_id: String,
    secret: String,
    dir: tempfile::TempDir,
}

fn between<'a>(text: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in the service's answer: {text}"))
        + open.len();
    let end = text[start..]
        .find(&format!("</{tag}>"))
        .unwrap_or_else(|| panic!("no </{tag}> in the service's answer: {text}"));
    &text[start..start + end]
}

impl S3Service {
    async fn start(bucket: &str) -> Self {
        let bin = std::env::var("GPUMESH_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("dir");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let child = tokio::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_REQUESTS.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{bin} ({e}): the S3 service these tests run against is moto's server: \
                     pip install 'moto[server]' (scripts/services.sh does), or set \
                     GPUMESH_MOTO_SERVER to its path"
                )
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not listen on {port} within 60 s: {}",
                std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Before signatures are checked the service routes a request by the scope its
        // Authorization header names; the signature itself is not looked at yet.
        let http = reqwest::Client::new();
        let unsigned = |service: &str| {
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261130/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
            )
        };
        let iam = |form: Vec<(&'static str, String)>| {
            let request = http
                .post(format!("{endpoint}/"))
                .header("Authorization", unsigned("iam"))
                .form(&form);
            async move {
                let response = request.send().await.expect("IAM request");
                let status = response.status();
                let text = response.text().await.expect("IAM answer");
                assert!(status.is_success(), "{status}: {text}");
                text
            }
        };
        let user = "gpumesh-worker".to_string();
        iam(vec![
            ("Action", "CreateUser".into()),
            ("UserName", user.clone()),
            ("Version", "2010-05-08".into()),
        ])
        .await;
        let key = iam(vec![
            ("Action", "CreateAccessKey".into()),
            ("UserName", user.clone()),
            ("Version", "2010-05-08".into()),
        ])
        .await;
        let (key_id, secret) = (
            between(&key, "AccessKeyId").to_string(),
            between(&key, "SecretAccessKey").to_string(),
        );
        iam(vec![
            ("Action", "PutUserPolicy".into()),
            ("UserName", user),
            ("PolicyName", "results".into()),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#.into(),
            ),
            ("Version", "2010-05-08".into()),
        ])
        .await;
        let made = http
            .put(format!("{endpoint}/{bucket}"))
            .header("Authorization", unsigned("s3"))
            .send()
            .await
            .expect("create bucket");
        assert!(made.status().is_success(), "{}", made.status());
        let service = S3Service {
            child,
            endpoint,
            key_id,
            secret,
            dir,
        };
        // From here on every request must be signed.
        let refused = http
            .get(format!("{}/{bucket}", service.endpoint))
            .header("Authorization", unsigned("s3"))
            .send()
            .await
            .expect("list");
        assert_eq!(
            refused.status(),
            reqwest::StatusCode::FORBIDDEN,
            "an unsigned request after the setup is refused"
        );
        service
    }

    /// The daemon's settings for `url`, with the user's key (the secret in a file).
    fn config(&self, url: &str) -> S3Config {
        self.config_with_secret(url, &self.secret.clone())
    }

    fn config_with_secret(&self, url: &str, secret: &str) -> S3Config {
        let file = self
            .dir
            .path()
            .join(format!("secret-{}", rand::random::<u32>()));
        std::fs::write(&file, format!("{secret}\n")).expect("secret file");
        S3Config {
            url: url.into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(self.key_id.clone()),
            secret_access_key_file: Some(file),
        }
    }

    /// A client of the test's own, to look at (and tamper with) what is in the bucket.
    fn client(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .build()
            .expect("client")
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The keys under `prefix`. The whole bucket is listed and filtered here: moto re-encodes a
/// query's values when it checks the signature, so a listing whose query holds a `/` (a prefix)
/// fails its check there, boto3's as well.
async fn keys_under(client: &AmazonS3, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = client
        .list(None)
        .map(|m| m.expect("listing").location.to_string())
        .filter(|k| std::future::ready(k.starts_with(&format!("{prefix}/"))))
        .collect()
        .await;
    keys.sort();
    keys
}

async fn object(client: &AmazonS3, key: &str) -> Vec<u8> {
    client
        .get(&ObjectKey::from(key))
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .bytes()
        .await
        .expect("bytes")
        .to_vec()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    std::fs::write(path, bytes).expect("write");
}

const LEASE: LeaseId = LeaseId {
    lease: Key([3; 32]),
    nonce: 4,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_checkpoints_are_stored_whole_and_come_back_only_as_hashed() {
    let s3 = S3Service::start("results").await;
    let client = s3.client("results");
    let store = S3Store::connect(&s3.config("s3://results/fleet/worker-1"))
        .await
        .expect("connects");
    let dir = tempfile::tempdir().expect("dir");

    // Results: a file bigger than one upload part (a multipart upload), one named like the
    // manifest, one in a subdirectory.
    let root = dir.path().join("results");
    let weights = random_bytes(12 << 20);
    write(&root, "model/weights.bin", &weights);
    write(&root, "manifest.json", b"the job's own file\n");
    write(&root, "log.txt", b"loss 0.25\n");
    let listed = vec!["model".into(), "manifest.json".into(), "log.txt".into()];
    let collected = collect(&root, &listed).expect("collect");
    let hash = collected.hash.expect("files");
    assert_eq!(
        collected.hash,
        results_hash(&[
            ("log.txt", b"loss 0.25\n"),
            ("manifest.json", b"the job's own file\n"),
            ("model/weights.bin", &weights),
        ])
        .expect("hash")
    );
    let at = store.put(LEASE, &root, &collected).await.expect("stored");
    let base = format!("fleet/worker-1/{}", hex(&hash));
    assert_eq!(at, format!("s3://results/{base}/"));
    assert_eq!(
        keys_under(&client, &base).await,
        vec![
            format!("{base}/files/log.txt"),
            format!("{base}/files/manifest.json"),
            format!("{base}/files/model/weights.bin"),
            format!("{base}/manifest.json"),
        ]
    );
    assert!(
        object(&client, &format!("{base}/files/model/weights.bin")).await == weights,
        "the multipart upload holds the file's bytes"
    );
    assert_eq!(
        object(&client, &format!("{base}/files/manifest.json")).await,
        b"the job's own file\n"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&object(&client, &format!("{base}/manifest.json")).await)
            .expect("manifest");
    assert_eq!(manifest["hash"], hex(&hash));
    assert_eq!(manifest["lease"], LEASE.lease.to_string());
    assert_eq!(manifest["files"][2]["size"], 12 << 20);
    // Storing the same content again writes nothing.
    let manifest_key = ObjectKey::from(format!("{base}/manifest.json"));
    let before = client.head(&manifest_key).await.expect("head");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        store.put(LEASE, &root, &collected).await.expect("again"),
        at
    );
    assert_eq!(
        client
            .head(&manifest_key)
            .await
            .expect("head")
            .last_modified,
        before.last_modified
    );

    // A file rewritten after it was hashed: nothing is published under the hash.
    let root2 = dir.path().join("results2");
    write(&root2, "out.txt", b"first\n");
    let collected2 = collect(&root2, &["out.txt".into()]).expect("collect");
    write(&root2, "out.txt", b"second\n");
    let err = store
        .put(LEASE, &root2, &collected2)
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("changed while it was stored"),
        "{err}"
    );
    let base2 = format!("fleet/worker-1/{}", hex(&collected2.hash.expect("hash")));
    assert_eq!(keys_under(&client, &base2).await, Vec::<String>::new());

    // Checkpoints: stored, and restored into a directory whose old content goes.
    let ckpt = dir.path().join("ckpt");
    let optimizer = random_bytes(11 << 20);
    write(&ckpt, "state", b"step 12\n");
    write(&ckpt, "opt/m.bin", &optimizer);
    let taken = collect_dir(&ckpt).expect("collect");
    let chash = taken.hash.expect("files");
    store
        .put_checkpoint(LEASE, &ckpt, &taken)
        .await
        .expect("stored");
    let cbase = format!("fleet/worker-1/checkpoints/{}", hex(&chash));
    assert_eq!(
        keys_under(&client, &cbase).await,
        vec![
            format!("{cbase}/files/opt/m.bin"),
            format!("{cbase}/files/state"),
            format!("{cbase}/manifest.json"),
        ]
    );
    let into = dir.path().join("job/scratch/ckpt");
    write(&into, "stale", b"x");
    let back = store.get_checkpoint(chash, &into).await.expect("restored");
    assert_eq!(back.hash, Some(chash));
    assert_eq!(
        std::fs::read(into.join("state")).expect("state"),
        b"step 12\n"
    );
    assert!(std::fs::read(into.join("opt/m.bin")).expect("m") == optimizer);
    assert!(!into.join("stale").exists());

    // Never stored.
    let err = store
        .get_checkpoint([7; 32], &into)
        .await
        .expect_err("missing");
    assert!(matches!(err, ResultsError::CheckpointMissing(_)), "{err}");

    // A stored file changed in the bucket: refused, the job's directory left as it was, no
    // temporary directory left behind.
    let state_key = ObjectKey::from(format!("{cbase}/files/state"));
    client
        .put(&state_key, b"step 99\n".to_vec().into())
        .await
        .expect("tamper");
    let err = store
        .get_checkpoint(chash, &into)
        .await
        .expect_err("corrupt");
    assert!(
        matches!(err, ResultsError::CheckpointCorrupt { .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read(into.join("state")).expect("kept"),
        b"step 12\n"
    );
    assert!(
        !dir.path()
            .join(format!("job/scratch/.restore-{}", hex(&chash)))
            .exists()
    );

    // A file gone from the bucket: the checkpoint is incomplete.
    client.delete(&state_key).await.expect("delete");
    let err = store
        .get_checkpoint(chash, &into)
        .await
        .expect_err("incomplete");
    assert!(matches!(err, ResultsError::CheckpointMissing(_)), "{err}");

    // A manifest that names a path outside the directory: nothing is written there.
    let forged = [9u8; 32];
    let fbase = format!("fleet/worker-1/checkpoints/{}", hex(&forged));
    let manifest = serde_json::json!({
        "hash": hex(&forged),
        "files": [{"path": "../../escaped", "size": 1, "blake3": hex(&[0; 32])}],
    });
    client
        .put(
            &ObjectKey::from(format!("{fbase}/manifest.json")),
            manifest.to_string().into_bytes().into(),
        )
        .await
        .expect("forge");
    let err = store
        .get_checkpoint(forged, &into)
        .await
        .expect_err("forged");
    assert!(matches!(err, ResultsError::BadPath(_)), "{err}");
    assert!(!dir.path().join("job/escaped").exists());
    assert!(!dir.path().join("escaped").exists());
    assert_eq!(
        std::fs::read(into.join("state")).expect("kept"),
        b"step 12\n"
    );
    s3.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_setting_is_refused_at_start_and_says_what_to_fix() {
    let s3 = S3Service::start("results").await;

    // A secret that is not the key's: the service refuses the signature.
    let wrong = s3.config_with_secret("s3://results", "not-the-secret");
    let err = S3Store::connect(&wrong).await.err().expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("SignatureDoesNotMatch") && text.contains("credentials"),
        "{text}"
    );

    // A bucket that does not exist.
    let err = S3Store::connect(&s3.config("s3://no-such-bucket/x"))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("does not exist"), "{err}");

    // A secret file that is not there.
    let mut missing = s3.config("s3://results");
    missing.secret_access_key_file = Some(PathBuf::from("/nonexistent/secret"));
    let err = S3Store::connect(&missing).await.err().expect("refused");
    assert!(err.to_string().contains("/nonexistent/secret"), "{err}");

    // Nothing listening at the endpoint: given up within the probe's limit, naming it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut unreachable = s3.config("s3://results");
    unreachable.endpoint = Some(format!("http://127.0.0.1:{closed}"));
    let asked = Instant::now();
    let err = S3Store::connect(&unreachable).await.err().expect("refused");
    assert!(
        asked.elapsed() < Duration::from_secs(60),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        err.to_string()
            .contains(&format!("at http://127.0.0.1:{closed}")),
        "{err}"
    );

    // The daemon itself refuses to start on it, before it connects anywhere.
    let names = Names::new();
    let dir = tempfile::tempdir().expect("dir");
    let mut config: Config = cpu_config(
        dir.path(),
        "ws://127.0.0.1:9/worker",
        &names,
        RuntimeKind::Command,
    );
    config.results = ResultsConfig::S3(wrong);
    let ended = tokio::time::timeout(Duration::from_secs(120), start_daemon(config).task)
        .await
        .expect("the daemon gives up")
        .expect("task");
    match ended {
        Err(DaemonError::Setup(why)) => {
            assert!(why.contains("SignatureDoesNotMatch"), "{why}")
        }
        other => panic!("the daemon should refuse to start: {other:?}"),
    }
    s3.stop().await;
}

/// Two machines that share nothing but the bucket: a job's checkpoint taken on the first is
/// restored on the second, and its results are in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_taken_on_one_machine_resumes_on_another_through_the_bucket() {
    let docker = engine().await;
    let image = test_image(&docker).await;
    let s3 = S3Service::start("fleet").await;
    let client = s3.client("fleet");
    let names = Names::new();
    let url = "s3://fleet/checkpoints-test";

    let s3_results = |c: &mut Config| c.results = ResultsConfig::S3(s3.config(url));
    let (orch, daemon, first_disk) = connected_daemon(&names, s3_results).await;
    let spec = format!(
        "image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"mkdir -p /scratch/ckpt && echo step 40 > /scratch/ckpt/state && dd if=/dev/urandom of=/scratch/ckpt/params bs=1048576 count=11 2>/dev/null && touch /scratch/.gpumesh-checkpoint && sleep 3 && echo trained > /results/model.txt\"]\nresults = [\"model.txt\"]\n[checkpoint]\ndir = \"ckpt\"\ninterval_s = 3600\n"
    );
    let (_, exit) = orch
        .run_to_exit(
            assignment(1, &spec, 1, vec![0], 1),
            "the first job's exit",
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(exit.exit_code, Some(0), "{}", exit.status);
    let want = results_hash(&[("model.txt", b"trained\n")]).expect("hash");
    assert_eq!(exit.result_hash, want);
    assert_eq!(
        object(
            &client,
            &format!(
                "checkpoints-test/{}/files/model.txt",
                hex(&want.expect("hash"))
            )
        )
        .await,
        b"trained\n"
    );
    let checkpoint = orch
        .wait("the checkpoint", Duration::from_secs(60), |s| {
            s.checkpoints.first().cloned()
        })
        .await;
    assert_eq!(checkpoint.files, 2);
    assert!(checkpoint.size > 11 << 20);
    assert!(orch.problems().is_empty(), "{:?}", orch.problems());
    daemon.stop().await.expect("stopped");
    drop(first_disk);

    // The second machine: its own disk, its own state; only the bucket in common.
    let (orch, daemon, _second_disk) = connected_daemon(&names, s3_results).await;
    let spec = format!(
        "image = \"{image}\"\ncommand = [\"sh\", \"-c\", \"cat /scratch/ckpt/state; echo resumed $GPUMESH_RESUME_HASH; wc -c < /scratch/ckpt/params\"]\n[checkpoint]\ndir = \"ckpt\"\ninterval_s = 3600\n"
    );
    let mut a = assignment(2, &spec, 1, vec![0], 1);
    a.restore = vec![checkpoint];
    let (lease, exit) = orch
        .run_to_exit(a, "the resumed job's exit", Duration::from_secs(120))
        .await;
    assert_eq!(exit.exit_code, Some(0), "{}", exit.status);
    let logs = orch.seen(|s| s.log_text(lease));
    assert!(logs.contains("step 40"), "{logs}");
    assert!(
        logs.contains(&format!("resumed {}", hex(&checkpoint.hash))),
        "{logs}"
    );
    assert!(logs.contains(&(11u64 << 20).to_string()), "{logs}");
    assert_eq!(
        orch.seen(|s| s.restored.clone()),
        vec![(lease, checkpoint.hash)]
    );
    assert!(orch.seen(|s| s.skipped.is_empty()));
    assert!(orch.problems().is_empty(), "{:?}", orch.problems());
    daemon.stop().await.expect("stopped");
    s3.stop().await;
}
