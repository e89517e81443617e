//! gpumesh-migrations: what an operator runs at deploy time. [`deploy`] initialises a market from
//! a TOML config, safe to run twice (`gpumesh-migrate` and `gpumesh market init` both call it);
//! the `gpumesh-idl` binary writes or checks the program's IDL.

pub mod deploy;
