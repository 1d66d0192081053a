//! Server-side errors. Each variant maps to one documented Confluent `error_code`; the HTTP
//! status is the first three digits of that code.

/// An error of the embedded registry (service or store).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("subject {0:?} not found")]
    SubjectNotFound(String),
    #[error("version {version} not found in subject {subject:?}")]
    VersionNotFound { subject: String, version: String },
    #[error("schema {0} not found")]
    SchemaNotFound(String),
    #[error("subject {0:?} was soft deleted; set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("subject {0:?} was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("version {version} of subject {subject:?} was soft deleted; set permanent=true to delete permanently")]
    VersionSoftDeleted { subject: String, version: u32 },
    #[error("version {version} of subject {subject:?} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted { subject: String, version: u32 },
    #[error("subject {0:?} does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    #[error("subject {0:?} does not have subject-level mode configured")]
    SubjectModeNotConfigured(String),
    #[error("schema being registered is incompatible with an earlier schema for subject {subject:?}, details: {messages:?}")]
    Incompatible { subject: String, messages: Vec<String> },
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    #[error("invalid version {0:?}: expected a positive integer, -1 or \"latest\"")]
    InvalidVersion(String),
    #[error("invalid compatibility level {0:?}")]
    InvalidCompatibilityLevel(String),
    #[error("invalid mode {0:?}: expected READWRITE, READONLY or IMPORT")]
    InvalidMode(String),
    #[error("{0}")]
    OperationNotPermitted(String),
    #[error("one or more references exist to the schema {{subject={subject}, version={version}}}")]
    ReferenceExists { subject: String, version: u32 },
    #[error("{0}")]
    IdDoesNotMatch(String),
    /// A malformed subject name, e.g. a context qualifier without its closing `:`.
    #[error("invalid subject {0}")]
    InvalidSubject(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("invalid request body: {0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("store error: {0}")]
    Store(#[from] sqlx::Error),
    #[error("subject {0:?} is being registered concurrently; retry")]
    Contended(String),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

impl RegistryError {
    /// The Confluent `error_code` of this error.
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound { .. } => 40402,
            Self::SchemaNotFound(_) => 40403,
            Self::SubjectSoftDeleted(_) => 40404,
            Self::SubjectNotSoftDeleted(_) => 40405,
            Self::VersionSoftDeleted { .. } => 40406,
            Self::VersionNotSoftDeleted { .. } => 40407,
            Self::SubjectCompatibilityNotConfigured(_) => 40408,
            Self::SubjectModeNotConfigured(_) => 40409,
            Self::Incompatible { .. } => 409,
            Self::InvalidSchema(_) => 42201,
            Self::InvalidVersion(_) => 42202,
            Self::InvalidCompatibilityLevel(_) => 42203,
            Self::InvalidMode(_) => 42204,
            Self::OperationNotPermitted(_) => 42205,
            Self::ReferenceExists { .. } => 42206,
            Self::IdDoesNotMatch(_) => 42207,
            Self::InvalidSubject(_) => 42208,
            Self::TooLarge(_) => 413,
            Self::BadRequest(_) => 400,
            Self::Unauthorized => 40101,
            Self::Store(_) | Self::Contended(_) | Self::Corrupt(_) => 50001,
        }
    }

    /// HTTP status: the first three digits of the error code.
    pub fn http_status(&self) -> u16 {
        let code = self.error_code();
        if code >= 1000 { (code / 100) as u16 } else { code as u16 }
    }
}
