//! `ringxfer`: move large arrays through a TCP socket with io_uring or a blocking loop, and
//! measure it.
//!
//! ```text
//! ringxfer bench                                    # the main job: 400 MB f64, both backends
//! ringxfer serve --listen 127.0.0.1:5000 --json     # framed arrays from any number of clients
//! ringxfer send --connect 127.0.0.1:5000 --dtype '>i4' --shape 20,10,5 --order F --arrays 3
//! ringxfer recv --listen 127.0.0.1:5000 --arrays 3  # framed: dtype and shape from the header
//! ringxfer recv --listen 127.0.0.1:5000 --raw --dtype f8 --count 20000000
//! ringxfer send --connect 127.0.0.1:5000 --raw --dtype f8 --count 20000000
//! ringxfer probe                                    # what io_uring offers here
//! ```
//!
//! See `ringxfer help <command>` and the [`cli`] module.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
