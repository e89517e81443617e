//! `gpumesh orchestrator run` as a process and `gpumesh order upload-spec` against it: the spec
//! a buyer's order waits for, refused when it is not the order's or not the buyer's, stored
//! across a restart; the service's refusals at start (missing config, a key the market does not
//! name) and its clean exit on SIGTERM.

use crate::net::Net;
use crate::procs::{Service, free_port, write_config};
use gpumesh_client::{Keypair, Signer, cluster};
use std::io::Read;

#[test]
fn a_buyer_uploads_its_job_spec_to_the_running_service() {
    let mut net = Net::start();
    let (operator, _) = net.wallet("operator.json", "10", "0");
    let (buyer, _) = net.wallet("buyer.json", "10", "500");
    let (stranger, _) = net.wallet("stranger.json", "10", "0");
    let orch = net.market(&operator);
    let market = net.market.unwrap().to_string();
    // The key file sits beside the config and is named relative to it.
    cluster::write_keypair(&orch, &net.path("orchestrator.json"), false).unwrap();

    // The service refuses to start without its config, or with a key the market does not name.
    let out = net.run(
        &operator,
        &[
            "orchestrator",
            "run",
            net.path("missing.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stdout);
    assert!(
        e.contains("cannot read") && e.contains("missing.toml"),
        "{e}"
    );
    let other = Keypair::new();
    cluster::write_keypair(&other, &net.path("other.json"), false).unwrap();
    let wrong = write_config(&net, "wrong.toml", &market, "other.json", free_port());
    let out = net.run(&operator, &["orchestrator", "run", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stdout);
    assert!(
        e.contains(&orch.pubkey().to_string()) && e.contains("the key the market names"),
        "{e}"
    );

    let port = free_port();
    let config = write_config(
        &net,
        "orchestrator.toml",
        &market,
        "orchestrator.json",
        port,
    );
    let service = Service::start(&net, &config);
    let health = service.get("/v1/health").unwrap();
    assert_eq!(health["market"], market.as_str());
    assert_eq!(health["orchestrator"], orch.pubkey().to_string());

    // A spec the orchestrator could not run never reaches the chain.
    let bad = net.path("bad.toml");
    std::fs::write(&bad, "command = [\"true\"]\n").unwrap();
    let e = net.fails(
        &buyer,
        &[
            "order",
            "create",
            "--class",
            "h100",
            "--regions",
            "eu-west",
            "--max-price",
            "0.002/s",
            "--duration",
            "3600",
            "--deposit",
            "5",
            "--spec",
            bad.to_str().unwrap(),
        ],
    );
    assert!(e.contains("not a job spec") && e.contains("image"), "{e}");
    let two = net.path("two.toml");
    std::fs::write(&two, "image = \"pytorch\"\ngpus = 2\n").unwrap();
    let e = net.fails(
        &buyer,
        &[
            "order",
            "create",
            "--class",
            "h100",
            "--regions",
            "eu-west",
            "--max-price",
            "0.002/s",
            "--duration",
            "3600",
            "--deposit",
            "5",
            "--spec",
            two.to_str().unwrap(),
        ],
    );
    assert!(e.contains("2 GPUs") && e.contains("--gpus"), "{e}");

    let v = net.order(&buyer, &["--deposit", "5"]);
    let order = v["order"].as_str().unwrap().to_string();
    let id = v["id"].to_string();
    let spec = net.path("job.toml");
    service.wait_for_reason(&order, "waiting for its job spec");

    // Another file than the order's: refused before anything is sent.
    let other_spec = net.path("other.toml");
    std::fs::write(&other_spec, "image = \"busybox\"\n").unwrap();
    let url = service.url.clone();
    let e = net.fails(
        &buyer,
        &[
            "order",
            "upload-spec",
            &id,
            other_spec.to_str().unwrap(),
            "--orchestrator",
            &url,
        ],
    );
    assert!(e.contains("hash differs"), "{e}");
    // Nobody listening: says so and what to check.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let e = net.fails(
        &buyer,
        &[
            "order",
            "upload-spec",
            &id,
            spec.to_str().unwrap(),
            "--orchestrator",
            &dead,
        ],
    );
    assert!(
        e.contains("did not answer") && e.contains("--orchestrator"),
        "{e}"
    );
    // The right file signed by someone else than the buyer: the service refuses it.
    let text = std::fs::read(&spec).unwrap();
    let stranger_key = cluster::read_keypair(&stranger).unwrap();
    let order_key = <gpumesh_client::Pubkey as std::str::FromStr>::from_str(&order).unwrap();
    let message = gpumesh_protocol::jobspec::upload_message(&order_key.to_bytes(), &text);
    let r = reqwest::blocking::Client::new()
        .put(format!("{url}/v1/orders/{order}/spec"))
        .header(
            "x-gpumesh-signature",
            stranger_key.sign_message(&message).to_string(),
        )
        .body(text.clone())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let mut body = String::new();
    r.take(4096).read_to_string(&mut body).unwrap();
    assert!(body.contains("buyer"), "{body}");
    service.wait_for_reason(&order, "waiting for its job spec");

    // The buyer's upload: the order moves on to wait for a worker (none registered).
    let v = net.ok(
        &buyer,
        &[
            "order",
            "upload-spec",
            &id,
            spec.to_str().unwrap(),
            "--orchestrator",
            &url,
        ],
    );
    assert_eq!(v["uploaded"], true);
    assert_eq!(v["order"], order.as_str());
    service.wait_for_reason(&order, "no worker fits");

    // SIGTERM: a clean exit. The spec is in the store: a restarted service does not ask again.
    let status = service.terminate();
    assert!(status.success(), "{status}");
    let service = Service::start(&net, &config);
    service.wait_for_reason(&order, "no worker fits");
    assert!(service.terminate().success());
}
