//! Errors of the host library.

/// The error a component returned: what WeChat (or the component's own checks) said, phrased
/// as what to do about it (`wit/types.wit`), with its JSON and what it means for a retry
/// ([`NotifyError::retry`]).
pub type NotifyError = wxnotify_contract::Error;

pub use wxnotify_tenants::{BoxError, ComponentProblem, ConfigError, error_chain as chain};

/// Why a call into the runtime failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tenants file or a tenant definition is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No tenant with this id is registered.
    #[error("tenant `{0}` is not configured")]
    UnknownTenant(String),
    /// The component answered with an error.
    #[error("tenant `{tenant}`: {error}")]
    Notify {
        /// The tenant.
        tenant: String,
        /// What the component said.
        error: NotifyError,
    },
    /// The component trapped, could not be instantiated, or broke the contract.
    #[error("tenant `{tenant}`: component failed: {message}")]
    Component {
        /// The tenant.
        tenant: String,
        /// The trap or failure, with its causes.
        message: String,
    },
    /// The call did not finish within the tenant's deadline.
    #[error("tenant `{tenant}`: call exceeded its deadline of {deadline_ms} ms")]
    Deadline {
        /// The tenant.
        tenant: String,
        /// The deadline.
        deadline_ms: u64,
    },
    /// The component needed more memory than the tenant's limit.
    #[error("tenant `{tenant}`: component exceeded its memory limit of {} MiB", limit_bytes >> 20)]
    MemoryLimit {
        /// The tenant.
        tenant: String,
        /// The limit.
        limit_bytes: usize,
    },
    /// The storage backend could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] wxnotify_store::StoreError),
    /// The engine, a tenant's storage or the HTTP client could not be set up.
    #[error("{what}: {}", chain(source.as_ref()))]
    Engine {
        /// What was being set up.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// The component's answer, when the failure is one.
    pub fn notify_error(&self) -> Option<&NotifyError> {
        match self {
            Error::Notify { error, .. } => Some(error),
            _ => None,
        }
    }
}
