//! Helpers of the CLI's integration tests: the library's shared helpers (tests/util/, one copy
//! for both packages) and the binary's own ([`bin`]).
#![allow(dead_code, unused_imports)]

#[path = "../../../tests/util/mod.rs"]
mod shared;
pub use shared::*;

pub mod bin;
