//! The one error type every runtime driver returns, sorted by what the caller does next.

/// What went wrong, in the terms the node agent acts on: a missing object, a failed pull (which
/// becomes `CannotPullContainerError: <reason>`), a conflict with the daemon's state, a daemon
/// that cannot be reached (the node "cannot run tasks"), a spec the runtime refuses, or anything
/// else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The container, image or volume does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The image could not be pulled; the text is the registry's or daemon's reason.
    #[error("{0}")]
    Pull(String),
    /// The request conflicts with the current state: a name already in use, a container that is
    /// not running, a host port already taken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The daemon could not be reached (no socket, connection refused, timed out).
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
    /// The spec asks for something the runtime refuses (checked before any call is made).
    #[error("invalid container spec: {0}")]
    Invalid(String),
    /// Anything else the daemon reported.
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// The reason text without the variant's prefix, for stopped reasons shown to users.
    pub fn reason(&self) -> &str {
        match self {
            RuntimeError::NotFound(s)
            | RuntimeError::Pull(s)
            | RuntimeError::Conflict(s)
            | RuntimeError::Unavailable(s)
            | RuntimeError::Invalid(s)
            | RuntimeError::Other(s) => s,
        }
    }
}
