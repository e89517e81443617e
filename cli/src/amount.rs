//! Token amounts: base units inside, whole tokens with the mint's decimals on screen and on the
//! command line. The rules live in the client crate, shared with migrations.

pub use gpumesh_client::amount::format;
