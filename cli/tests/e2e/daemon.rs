//! The market running with nothing played by hand: the real `gpumesh orchestrator run`, real
//! `gpumesh worker run` daemons (CPU workers whose jobs run in containers through the engine
//! `DOCKER_HOST` names), and a buyer who only types `gpumesh` commands.
//!
//! - an order runs to completion: placed, run in a container, its output read by the buyer, the
//!   worker's receipts settled, the order completed with the result's hash; the buyer pays
//!   exactly the seconds served and gets the rest back;
//! - a worker killed mid-lease (SIGKILL): the buyer is paid the slash, the job runs again on the
//!   other worker, each lease is paid for its own seconds only;
//! - the orchestrator restarted mid-lease: the daemon finds it again, the lease goes on, no
//!   second is lost or paid twice, and the worker is not counted as failed;
//! - an order at its limits: its duration per lease served, or its escrow spent: the job is
//!   stopped in time for its last seconds to be paid;
//! - a buyer who asks to close: the service stops the job, pays its last seconds and refunds
//!   the rest at once, without the exit window.
//!
//! Every scenario ends with `gpumesh market audit` (each vault holds what the accounts owe) and
//! checks that no container is left behind.

use crate::market::{Market, PRICE_PER_SECOND, hello_spec, lease_of};
use crate::net::ONE;
use crate::procs::Service;
use gpumesh_client::{Pubkey, Signer, cluster};
use serde_json::Value;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

#[test]
fn an_order_runs_to_completion_on_a_worker_daemon() {
    let m = Market::start();
    let alice = m.supplier("alice");
    let mut daemon = m.daemon(&alice);
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello.toml");
    let before = m.net.tokens(&m.buyer_key);
    let started = Instant::now();
    let order = m.order(&spec);
    assert_eq!(m.net.tokens(&m.buyer_key), before - 10 * ONE);

    // Placed, run, exited: the service's page shows the job's end with its result hash.
    let deadline = Instant::now() + Duration::from_secs(90);
    let job = loop {
        let page = m.order_page(&order);
        if let Some(j) = page["jobs"]
            .as_array()
            .and_then(|j| j.iter().find(|j| j["result_hash"].is_string()).cloned())
        {
            break j;
        }
        m.fail_after(deadline, "the job never ended", &page, &[&daemon]);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["worker"], alice.worker.as_str(), "{job}");
    assert_eq!(job["exit_code"], 0, "{job}");
    let lease = lease_of(&job);
    let result_hash = job["result_hash"].as_str().unwrap().to_string();
    assert_eq!(result_hash.len(), 64, "{job}");

    // The job's output reached the service (the buyer reads it with a signed request).
    let logs = {
        let key = cluster::read_keypair(&m.buyer).unwrap();
        let order_key = Pubkey::from_str(&order).unwrap();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let message = gpumesh_protocol::jobspec::logs_message(&order_key.to_bytes(), unix_ms);
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v1/orders/{order}/logs", m.service.url))
            .header(
                "x-gpumesh-signature",
                key.sign_message(&message).to_string(),
            )
            .header("x-gpumesh-unix-ms", unix_ms.to_string())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text());
        r.text().unwrap()
    };
    for line in [
        "hello from gpumesh",
        "greeting: hello from the buyer",
        "step 3",
        "done: /results/hello.txt",
    ] {
        assert!(logs.contains(line), "{line:?} not in the logs:\n{logs}");
    }

    // The lease closes as completed and the order account with it: the buyer paid exactly the
    // seconds served at the worker's price, the rest of the escrow came back.
    let served = m.completed(&order, std::slice::from_ref(&lease), &[&daemon])[0];
    let completed_after = started.elapsed();
    // examples/hello works three one-second steps; served time is whole seconds the engine saw
    // the container run, counted from when the engine's start call returned: on a busy host
    // that call returns late and a second may go unpaid (the worker's loss, never the buyer's).
    assert!((2..=4).contains(&served), "{served} s served");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - served * PRICE_PER_SECOND,
        "the buyer pays {served} s at {PRICE_PER_SECOND} base units and gets the rest back"
    );
    let status = m.worker_status(&alice);
    assert_eq!(status["active_leases"], 0, "{status}");
    assert_eq!(status["record"]["leases_completed"], 1, "{status}");

    // SIGTERM: both exit 0; the books hold and no container is left.
    daemon.check_alive();
    let daemon_status = daemon.terminate();
    assert!(daemon_status.success(), "{daemon_status}");
    m.sound(&[lease]);
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "order {order}: completed {:.1} s after it was created, {served} s served, result {result_hash}",
        completed_after.as_secs_f64()
    );
}

#[test]
fn a_killed_worker_pays_the_buyer_and_its_job_runs_again_on_the_other() {
    let m = Market::start();
    let alice = m.supplier("alice");
    let bob = m.supplier("bob");
    let a = m.daemon(&alice);
    let b = m.daemon(&bob);
    let before = m.net.tokens(&m.buyer_key);
    let spec = hello_spec(&m.net, 6);
    let order = m.order(&spec);

    // The job runs two seconds on one of them; that machine dies.
    let first = m.running(&order, None, 2, &[&a, &b]);
    let first_lease = lease_of(&first);
    let (dead, dead_daemon, spare, spare_daemon) = if first["worker"] == alice.worker.as_str() {
        (&alice, a, &bob, b)
    } else {
        (&bob, b, &alice, a)
    };
    let stake_before = m.stake(dead);
    let killed = Instant::now();
    drop(dead_daemon); // SIGKILL
    let second = m.running(&order, Some(&spare.worker), 0, &[&spare_daemon]);
    let moved_after = killed.elapsed();
    let second_lease = lease_of(&second);
    assert_ne!(first_lease, second_lease);

    let leases = [first_lease, second_lease];
    let served = m.completed(&order, &leases, &[&spare_daemon]);
    // The first lease is paid what its worker signed before it died (receipts every second:
    // at least one of the two seconds seen, never more than it ran), the second the whole job
    // again (six one-second steps, less what a busy engine's late start call leaves unpaid).
    assert!((1..=4).contains(&served[0]), "{served:?}");
    assert!((4..=7).contains(&served[1]), "{served:?}");
    let slash = stake_before - m.stake(dead);
    assert!(slash > 0, "the dead worker was slashed");
    let status = m.worker_status(dead);
    assert_eq!(status["record"]["failures"], 1, "{status}");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - (served[0] + served[1]) * PRICE_PER_SECOND + slash,
        "the buyer pays each lease's seconds once and receives the slash"
    );
    assert_eq!(m.worker_status(spare)["record"]["failures"], 0);

    // The dead machine's daemon comes back: the orchestrator no longer lists its lease, so it
    // stops and removes the container it left running, and the worker is offered again.
    let back = m.daemon(dead);
    m.reaped(&leases[0], &[&back]);
    m.sound(&leases);
    let back_status = back.terminate();
    assert!(back_status.success(), "{back_status}");
    let spare_status = spare_daemon.terminate();
    assert!(spare_status.success(), "{spare_status}");
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "failover: the job ran again on the spare {:.2} s after the kill ({} s and {} s paid, slash {slash})",
        moved_after.as_secs_f64(),
        served[0],
        served[1]
    );
}

#[test]
fn a_restarted_orchestrator_loses_no_second_and_pays_none_twice() {
    let mut m = Market::start();
    let alice = m.supplier("alice");
    let daemon = m.daemon(&alice);
    let before = m.net.tokens(&m.buyer_key);
    let spec = hello_spec(&m.net, 8);
    let order = m.order(&spec);
    let lease = m.running(&order, None, 2, &[&daemon]);
    let lease = lease_of(&lease);

    // SIGTERM the service mid-lease (it settles what is due on the way down), keep it down two
    // seconds, start it again on the same store.
    let Market { service, .. } = m;
    let stopped = service.terminate();
    assert!(stopped.success(), "{stopped}");
    std::thread::sleep(Duration::from_secs(2));
    m = Market {
        service: Service::start(&m.net, &m.config),
        ..m
    };
    let back = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !m.connected(&alice.worker) {
        m.fail_after(
            deadline,
            "the daemon never came back",
            &Value::Null,
            &[&daemon],
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let reconnected = back.elapsed();

    let served = m.completed(&order, std::slice::from_ref(&lease), &[&daemon])[0];
    // Eight one-second steps paid, the time the service was down included (the daemon kept the
    // job running and signed for it after it reconnected), less what a busy engine's late start
    // call leaves unpaid.
    assert!((6..=9).contains(&served), "{served} s served");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - served * PRICE_PER_SECOND,
        "each second paid once"
    );
    let status = m.worker_status(&alice);
    assert_eq!(status["record"]["failures"], 0, "{status}");
    assert_eq!(status["record"]["leases_completed"], 1, "{status}");
    m.sound(&[lease]);
    let daemon_status = daemon.terminate();
    assert!(daemon_status.success(), "{daemon_status}");
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "restart: the daemon reconnected {:.2} s after the service was back; {served} s paid",
        reconnected.as_secs_f64()
    );
}

#[test]
fn an_order_stops_its_job_when_its_term_is_served_or_its_escrow_spent() {
    let m = Market::start();
    let alice = m.supplier("alice");
    let bob = m.supplier("bob");
    let a = m.daemon(&alice);
    let b = m.daemon(&bob);
    let before = m.net.tokens(&m.buyer_key);
    // Both jobs would run a minute. One order's leases may serve 14 s; the other's escrow
    // covers 14 s (14,000 base units at 1,000 a second).
    let spec = hello_spec(&m.net, 60);
    let term = m.order_for(&spec, "14", "10");
    let escrow = m.order_for(&spec, "600", "0.014");

    let mut leases = vec![];
    let mut served = vec![];
    for order in [&term, &escrow] {
        let deadline = Instant::now() + Duration::from_secs(90);
        let job = loop {
            let page = m.order_page(order);
            if let Some(j) = page["jobs"].as_array().and_then(|j| {
                j.iter()
                    .find(|j| {
                        j["status"]
                            .as_str()
                            .is_some_and(|s| s.contains("lease ended"))
                    })
                    .cloned()
            }) {
                break j;
            }
            m.fail_after(deadline, "the job was never stopped", &page, &[&a, &b]);
            std::thread::sleep(Duration::from_millis(100));
        };
        let lease = lease_of(&job);
        let s = m.completed(order, std::slice::from_ref(&lease), &[&a, &b])[0];
        assert!((5..=14).contains(&s), "{s} s served: {job}");
        leases.push(lease);
        served.push(s);
    }
    let histories: Vec<Value> = leases
        .iter()
        .map(|(l, n)| m.service.get(&format!("/v1/leases/{l}?nonce={n}")).unwrap())
        .collect();
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - (served[0] + served[1]) * PRICE_PER_SECOND,
        "each order pays its seconds, within its term and its escrow, and gets the rest back: {served:?} {histories:?}"
    );
    for s in [&alice, &bob] {
        let status = m.worker_status(s);
        assert_eq!(status["active_leases"], 0, "{status}");
        assert_eq!(status["record"]["failures"], 0, "{status}");
    }
    m.sound(&leases);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "limits: the term's job stopped after {} s served, the escrow's after {} s",
        served[0], served[1]
    );
}

#[test]
fn a_buyer_who_asks_to_close_is_settled_and_refunded_by_the_service_at_once() {
    let m = Market::start();
    let alice = m.supplier("alice");
    let daemon = m.daemon(&alice);
    let before = m.net.tokens(&m.buyer_key);
    let order = m.order(&hello_spec(&m.net, 60));
    let lease = m.running(&order, None, 2, &[&daemon]);
    let lease = lease_of(&lease);

    // The buyer asks to close. The service stops the job, pays its last seconds with the
    // lease's close and completes the order: the escrow is back well before the exit window
    // (10 s on this market) would have let the buyer take it.
    let asked = Instant::now();
    let v = m.net.ok(&m.buyer, &["order", "cancel", "1"]);
    assert_eq!(v["action"], "order close requested", "{v}");
    let served = m.completed(&order, std::slice::from_ref(&lease), &[&daemon])[0];
    // The buyer never ran `order cancel` again: the service closed it.
    let closed_after = asked.elapsed();
    assert!(served >= 2, "{served} s served");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - served * PRICE_PER_SECOND,
        "every second served paid, the rest back"
    );
    let status = m.worker_status(&alice);
    assert_eq!(status["active_leases"], 0, "{status}");
    assert_eq!(status["record"]["failures"], 0, "{status}");
    m.sound(std::slice::from_ref(&lease));
    assert!(daemon.terminate().success());
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "close: the service settled and refunded {:.1} s after the buyer asked ({served} s paid)",
        closed_after.as_secs_f64()
    );
}
