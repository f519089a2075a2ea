//! The hub client: HTTP(S) transport with rustls ([`transport`]), sessions with
//! Koji's session headers, call numbers, exclusivity, subsessions and renewal
//! ([`session`]), kojid's retry rules ([`retry`]), typed wrappers for the calls a
//! builder makes ([`calls`]) and raw uploads ([`upload`]). See docs/hub.md.

pub mod calls;
pub mod retry;
pub mod session;
pub mod transport;
pub mod upload;

pub use calls::{AssignedTask, HostInfo, HostTask, TaskState};
pub use retry::RetryPolicy;
pub use session::{AuthMethod, HubSession, SessionInfo};
pub use transport::{HubTransport, TransportError, TransportOptions};
pub use upload::{LogSync, UploadError, UploadOptions, UploadSummary, Uploader, Verify};

use crate::xmlrpc::{DecodeError, Fault, FaultKind};

/// Why a hub call failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The hub answered with a fault.
    #[error("hub call {method}: {fault}")]
    Fault {
        /// The XML-RPC method.
        method: String,
        /// The fault.
        fault: Fault,
    },
    /// No answer (connection, TLS, HTTP status, timeout) after the retries allowed.
    #[error("hub call {method}: {source}")]
    Transport {
        /// The XML-RPC method.
        method: String,
        /// What went wrong.
        source: TransportError,
    },
    /// The answer was not XML-RPC.
    #[error("hub call {method}: unreadable response: {source}")]
    Decode {
        /// The XML-RPC method.
        method: String,
        /// The decoder's error.
        source: DecodeError,
    },
    /// The answer was XML-RPC but not of the shape the call returns.
    #[error("hub call {method}: unexpected response: {msg}")]
    Protocol {
        /// The XML-RPC method.
        method: String,
        /// What was wrong.
        msg: String,
    },
    /// A retried call was refused with RetryError: the earlier attempt, whose answer
    /// was lost, had already taken effect. Its result is not known.
    #[error("hub call {method}: an earlier attempt took effect but its answer was lost ({fault})")]
    TookEffect {
        /// The XML-RPC method.
        method: String,
        /// The RetryError the hub sent.
        fault: Fault,
    },
    /// A call that needs a session was made without one.
    #[error("hub call {method}: not logged in")]
    NotLoggedIn {
        /// The XML-RPC method.
        method: String,
    },
    /// Authentication cannot be attempted as configured.
    #[error("{0}")]
    AuthSetup(String),
}

impl HubError {
    /// The fault class, when the hub sent a fault.
    pub fn fault_kind(&self) -> Option<FaultKind> {
        match self {
            HubError::Fault { fault, .. } | HubError::TookEffect { fault, .. } => {
                Some(fault.kind())
            }
            _ => None,
        }
    }

    /// `isinstance(err, kind)` for faults (false for other errors).
    pub fn is_fault(&self, kind: FaultKind) -> bool {
        matches!(self, HubError::Fault { fault, .. } if fault.kind().is_a(kind))
    }

    /// The fault, when the hub sent one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            HubError::Fault { fault, .. } => Some(fault),
            _ => None,
        }
    }

    pub(crate) fn protocol(method: &str, msg: impl Into<String>) -> HubError {
        HubError::Protocol {
            method: method.to_owned(),
            msg: msg.into(),
        }
    }
}

/// `koji.pathinfo.taskrelpath`: `tasks/<id % 10000>/<id>`.
pub fn taskrelpath(task_id: i64) -> String {
    format!("tasks/{}/{}", task_id % 10000, task_id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn taskrelpath_matches_koji() {
        assert_eq!(super::taskrelpath(12345678), "tasks/5678/12345678");
        assert_eq!(super::taskrelpath(7), "tasks/7/7");
    }
}
