//! Why a command failed: the message and the exit status.

/// Why a subcommand failed: a one-line message for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// Exit status: 1 for a failed transfer or check, 2 for a usage error.
    pub code: u8,
    /// One line, printed after `ringxfer <subcommand>: `.
    pub message: String,
}

impl Failure {
    /// A failed transfer or check (exit status 1).
    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// A usage error (exit status 2, as clap's own).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// The same failure with `suffix` appended to its message.
    pub fn with_suffix(self, suffix: &str) -> Failure {
        Failure {
            message: format!("{}{suffix}", self.message),
            ..self
        }
    }
}

impl From<ringxfer::Error> for Failure {
    fn from(e: ringxfer::Error) -> Failure {
        match e {
            ringxfer::Error::InvalidInput(_) => Failure::usage(e.to_string()),
            _ => Failure::runtime(e.to_string()),
        }
    }
}
