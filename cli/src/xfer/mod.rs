//! `ringxfer send` / `ringxfer recv`: arrays between two processes, framed (the default,
//! [`framed`]; over several streams or rails, [`striped`]) or raw (`--raw`: one connection,
//! [`raw`]; several streams or rails and `--bidir`, [`streams`]). The flags are in [`args`];
//! connections in [`crate::net`].

pub mod args;
pub mod framed;
mod raw;
mod streams;
mod striped;

pub use args::{Role, XferArgs};

use crate::failure::Failure;

/// Runs `ringxfer send` or `ringxfer recv`.
pub fn run(role: Role, a: &XferArgs) -> Result<(), Failure> {
    check_file_flags(role, a)?;
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
        check_framed_streams(role, a, &rails)?;
        return framed::run(role, a, &rails);
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

/// `--file` is for `send`, `--out` for `recv`; they stripe over `--streams` and rails like the
/// arange pattern, but not with `--bidir` (one file, one direction).
fn check_file_flags(role: Role, a: &XferArgs) -> Result<(), Failure> {
    let given = match (role, &a.files.file, &a.files.out) {
        (Role::Recv, Some(_), _) => {
            return Err(Failure::usage(
                "--file is for send (recv writes with --out)",
            ));
        }
        (Role::Send, _, Some(_)) => {
            return Err(Failure::usage("--out is for recv (send reads with --file)"));
        }
        (_, Some(_), _) => "--file",
        (_, _, Some(_)) => "--out",
        (_, None, None) => return Ok(()),
    };
    if a.bidir {
        return Err(Failure::usage(format!(
            "{given} moves data one way: not with --bidir"
        )));
    }
    if role == Role::Recv && a.raw && !a.array.count_given() {
        return Err(Failure::usage(
            "--raw --out needs --count or --size: raw bytes carry no length",
        ));
    }
    Ok(())
}

/// What framed mode cannot do over several streams (usage errors, exit 2): `--bidir` and
/// numpy's `.npy` stream format (it has no place for the stripe geometry).
fn check_framed_streams(role: Role, a: &XferArgs, rails: &[String]) -> Result<(), Failure> {
    if a.bidir {
        return Err(Failure::usage(
            "--bidir needs --raw: framed mode sends one way",
        ));
    }
    if !striped::wanted(a, rails) || role == Role::Recv {
        return Ok(());
    }
    if a.framed.format == Some(ringxfer::WireFormat::Npy) {
        return Err(Failure::usage(
            "--format npy cannot stripe: numpy's .npy stream has no place for the stripe \
             geometry; drop --format npy (RGXF stripes) or send over one connection",
        ));
    }
    Ok(())
}
