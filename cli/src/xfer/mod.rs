//! `ringxfer send` / `ringxfer recv`: arrays between two processes, framed (the default,
//! [`framed`]) or raw (`--raw`: one connection, [`raw`]; several streams or rails and
//! `--bidir`, [`streams`]). The flags are in [`args`]; connections in [`crate::net`].

pub mod args;
pub mod framed;
mod raw;
mod streams;

pub use args::{Role, XferArgs};

use crate::failure::Failure;

/// Runs `ringxfer send` or `ringxfer recv`.
pub fn run(role: Role, a: &XferArgs) -> Result<(), Failure> {
    crate::net::set_auth_key(crate::net::load_key(a.auth_key.as_ref())?);
    let rails = a.endpoint.rails()?;
    let unix = rails.iter().any(|r| crate::net::unix_path(r).is_some());
    if unix && rails.len() > 1 {
        return Err(Failure::usage(format!(
            "rails are TCP addresses; a unix:PATH socket is one connection: {:?}",
            rails.join(",")
        )));
    }
    let multi = a.streams > 1 || rails.len() > 1 || a.bidir;
    if multi && unix {
        return Err(Failure::usage(
            "--streams > 1 and --bidir are for TCP; a unix:PATH socket is one connection",
        ));
    }
    if !a.raw {
        if multi {
            return Err(Failure::usage(
                "--streams > 1, several --listen/--connect addresses (rails) and --bidir need \
                 --raw: framed striping is not implemented yet",
            ));
        }
        return framed::run(role, a);
    }
    if let Some(flag) = a.framed.given() {
        return Err(Failure::usage(format!(
            "{flag} is for framed mode, not --raw"
        )));
    }
    if a.get_server_output {
        return Err(Failure::usage(
            "--get-server-output is for framed mode (a ringxfer serve peer), not --raw",
        ));
    }
    raw::run(role, a, &rails, multi)
}
