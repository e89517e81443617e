//! Account sizes are part of the on-chain layout: a change here is a migration, so it must be
//! deliberate. Also reports the rent each account costs.

use gpumesh_client::program::state::*;
use gpumesh_client::*;
use gpumesh_svm::SvmChain;

#[test]
fn account_sizes_are_pinned() {
    let chain = SvmChain::new();
    let sizes = [
        ("Market", Market::SPACE, 920),
        ("Worker", Worker::SPACE, 303),
        ("Order", Order::SPACE, 267),
        ("Lease", Lease::SPACE, 328),
    ];
    for (name, size, pinned) in sizes {
        let rent = chain.rent_exempt_minimum(size).unwrap();
        println!("{name}: {size} bytes, rent {rent} lamports");
        assert_eq!(size, pinned, "{name} layout changed");
    }
}
