//! The example job specs under `examples/` are valid specs, and the images they name are the
//! ones their directories build.

use gpumesh_protocol::wire::JobSpec;
use std::path::Path;

fn example(name: &str) -> (String, JobSpec) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = JobSpec::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    (text, spec)
}

#[test]
fn the_example_specs_parse() {
    let (_, hello) = example("hello.toml");
    assert_eq!(hello.image, "localhost/gpumesh-hello:latest");
    assert_eq!(hello.results, vec!["hello.txt"]);
    let (_, train) = example("train.toml");
    assert_eq!(
        (train.gpus, train.image.as_str()),
        (2, "localhost/gpumesh-train:latest")
    );
    let containerfile = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/train/Containerfile"),
    )
    .expect("train/Containerfile");
    assert!(containerfile.contains("COPY train.py /app/train.py"));
    assert!(train.command.contains(&"/app/train.py".to_string()));
    let (_, jupyter) = example("jupyter.toml");
    assert_eq!(jupyter.ports, vec![8888]);
    assert_eq!(jupyter.results, vec!["work"]);
    let (_, resume) = example("resume.toml");
    assert_eq!(resume.image, gpumesh_worker::examples::RESUME_IMAGE);
    let checkpoint = resume.checkpoint.expect("the resume example checkpoints");
    assert_eq!(
        (checkpoint.dir.as_str(), checkpoint.interval_s),
        ("ckpt", 10)
    );
    assert_eq!(resume.results, vec!["model.txt"]);
}
