//! Why a tenants file, or a tenant's component, cannot be used.

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
    #[error("not a valid component: {}", error_chain(.0.as_ref()))]
    Invalid(#[source] BoxError),
    /// It imports something this host does not provide.
    #[error("imports something this host does not provide: {}", error_chain(.0.as_ref()))]
    Imports(#[source] BoxError),
    /// It does not export the world.
    #[error("does not export the wechat:notify/notify world: {}", error_chain(.0.as_ref()))]
    Exports(#[source] BoxError),
}

/// `error` and its causes, `: `-separated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
