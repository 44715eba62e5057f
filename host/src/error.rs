//! Errors of the host library.

/// The error a component returned: what WeChat (or the component's own checks) said, phrased
/// as what to do about it (`wit/types.wit`), with its JSON and what it means for a retry
/// ([`NotifyError::retry`]).
pub type NotifyError = wxnotify_contract::Error;

/// Why a tenants file cannot be used. Every case names the tenant and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read tenants file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown or mistyped field.
    #[error("tenants file {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's error, with line and column.
        source: toml::de::Error,
    },
    /// A field has a value that cannot work.
    #[error("tenant `{tenant}`: {field}: {message}")]
    Invalid {
        /// The tenant.
        tenant: String,
        /// The field, as written in the file.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A secret is referenced from an environment variable that is not set.
    #[error("tenant `{tenant}`: {field} names environment variable {variable}, which is not set")]
    MissingSecret {
        /// The tenant.
        tenant: String,
        /// The field, as written in the file.
        field: String,
        /// The environment variable.
        variable: String,
    },
    /// The tenant's component cannot be loaded.
    #[error("tenant `{tenant}`: component {path}: {problem}")]
    Component {
        /// The tenant.
        tenant: String,
        /// The component file, or `built-in`.
        path: String,
        /// Why it cannot be used.
        #[source]
        problem: ComponentProblem,
    },
}

/// An error of wasmtime or another library, kept with its chain of causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a file cannot run as a tenant's component. The message shows the whole chain of causes
/// (wasmtime's errors are layered); `source` keeps it for walking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentProblem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Unreadable(#[source] std::io::Error),
    /// Not a component wasmtime can compile.
    #[error("not a valid component: {}", chain(.0.as_ref()))]
    Invalid(#[source] BoxError),
    /// It imports something this host does not provide.
    #[error("imports something this host does not provide: {}", chain(.0.as_ref()))]
    Imports(#[source] BoxError),
    /// It does not export the world.
    #[error("does not export the wechat:notify/notify world: {}", chain(.0.as_ref()))]
    Exports(#[source] BoxError),
}

/// `error` and its causes, `: `-separated.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

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
