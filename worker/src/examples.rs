//! The images of the repository's examples, built on this machine through the container engine's
//! API (what `docker build` does, without a CLI or a registry). `examples/hello` needs only the
//! host's busybox-static: the first job a new market runs, for `gpumesh up` and the tests.
//! `examples/resume` (a small training loop that checkpoints and resumes) is built the same way.

use crate::daemon::runtime::RuntimeError;
use bollard::Docker;
use futures_util::StreamExt;
use std::path::Path;

/// The hello example's image, as `examples/hello.toml` names it.
pub const HELLO_IMAGE: &str = "localhost/gpumesh-hello:latest";

const HELLO_CONTAINERFILE: &[u8] = include_bytes!("../../examples/hello/Containerfile");
const HELLO_SCRIPT: &[u8] = include_bytes!("../../examples/hello/hello.sh");
/// The resume example's image, as `examples/resume.toml` names it.
pub const RESUME_IMAGE: &str = "localhost/gpumesh-resume:latest";

const RESUME_CONTAINERFILE: &[u8] = include_bytes!("../../examples/resume/Containerfile");
/// The resume example's training script (also runs on the host under `busybox sh`).
pub const RESUME_SCRIPT: &[u8] = include_bytes!("../../examples/resume/train.sh");
/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Builds `tag` from a context of (name, bytes, mode) files with `Containerfile` as its recipe.
pub async fn build_image(
    docker: &Docker,
    tag: &str,
    files: &[(&str, &[u8], u32)],
) -> Result<(), RuntimeError> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_cksum();
        tar.append_data(&mut header, name, *bytes)
            .map_err(|e| RuntimeError::Engine(format!("packing the build context: {e}")))?;
    }
    let context = tar
        .into_inner()
        .map_err(|e| RuntimeError::Engine(format!("packing the build context: {e}")))?;
    let mut build = docker.build_image(
        bollard::query_parameters::BuildImageOptions {
            dockerfile: "Containerfile".into(),
            t: Some(tag.into()),
            rm: true,
            ..Default::default()
        },
        None,
        Some(bollard::body_full(bytes::Bytes::from(context))),
    );
    while let Some(step) = build.next().await {
        let step = step.map_err(|e| RuntimeError::Engine(format!("building {tag}: {e}")))?;
        if let Some(e) = step.error_detail {
            return Err(RuntimeError::Engine(format!(
                "building {tag}: {}",
                e.message.unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// The container engine at `docker_host` (default `$DOCKER_HOST`, else Docker's socket), checked
/// as the daemon checks it.
pub async fn engine(docker_host: Option<&str>) -> Result<Docker, RuntimeError> {
    Ok(crate::daemon::runtime::docker::connect_engine(docker_host)
        .await?
        .0)
}

fn busybox(image: &str) -> Result<Vec<u8>, RuntimeError> {
    std::fs::read(Path::new(BUSYBOX)).map_err(|e| {
        RuntimeError::Engine(format!(
            "{BUSYBOX} cannot be read ({e}): the image {image} needs busybox-static (apt-get install busybox-static)"
        ))
    })
}

/// The label an example's image carries: the hash of the files it was built from, so an image
/// built from an older version of the example is built again.
const SOURCE_LABEL: &str = "gpumesh.example.source";

/// Builds `tag` from an example's files (busybox-static added) unless the engine has it built
/// from these very files.
async fn ensure_example(
    docker: &Docker,
    tag: &str,
    containerfile: &[u8],
    files: &[(&str, &[u8], u32)],
) -> Result<(), RuntimeError> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(containerfile);
    for (name, bytes, mode) in files {
        hasher.update(name.as_bytes());
        hasher.update(&mode.to_le_bytes());
        hasher.update(blake3::hash(bytes).as_bytes());
    }
    let source = hasher.finalize().to_hex().to_string();
    if let Ok(image) = docker.inspect_image(tag).await
        && image
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(SOURCE_LABEL).cloned())
            .is_some_and(|l| l == source)
    {
        return Ok(());
    }
    let busybox = busybox(tag)?;
    let mut recipe = containerfile.to_vec();
    recipe.extend_from_slice(format!("\nLABEL {SOURCE_LABEL}=\"{source}\"\n").as_bytes());
    let mut context: Vec<(&str, &[u8], u32)> = vec![
        ("Containerfile", &recipe, 0o644),
        ("busybox", &busybox, 0o755),
    ];
    context.extend_from_slice(files);
    build_image(docker, tag, &context).await
}

/// Builds the hello example's image unless the engine has it (from these files) already.
pub async fn ensure_hello(docker: &Docker) -> Result<(), RuntimeError> {
    ensure_example(
        docker,
        HELLO_IMAGE,
        HELLO_CONTAINERFILE,
        &[("hello.sh", HELLO_SCRIPT, 0o755)],
    )
    .await
}

/// Builds the resume example's image unless the engine has it (from these files) already.
pub async fn ensure_resume(docker: &Docker) -> Result<(), RuntimeError> {
    ensure_example(
        docker,
        RESUME_IMAGE,
        RESUME_CONTAINERFILE,
        &[("train.sh", RESUME_SCRIPT, 0o755)],
    )
    .await
}
