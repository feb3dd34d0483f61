//! The one error type of the platform. Every layer returns it; the API maps its kind to an HTTP
//! status in one place (`api::error`), so a rule written here reads the same to every client.

use std::borrow::Cow;

/// What went wrong, in terms a client can act on. Each kind maps to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed: bad JSON, wrong type, unknown field (400).
    InvalidRequest,
    /// No credentials, or credentials we do not know (401).
    Unauthenticated,
    /// Known credentials without the scope the route needs (403).
    Forbidden,
    /// The resource does not exist (404).
    NotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The request contradicts stored state, e.g. a duplicate unique field (409).
    Conflict,
    /// The body is larger than the route accepts (413).
    PayloadTooLarge,
    /// Well-formed but semantically wrong, e.g. an email without a domain (422).
    Unprocessable,
    /// A capability that is planned but not built yet (501); never used to pretend success.
    NotImplemented,
    /// A dependency is overloaded or unreachable; retrying later may succeed (503).
    Unavailable,
    /// A bug or an unexpected state on our side (500). Never caused by bad input.
    Internal,
}

/// An error with a stable machine-readable `code`, a human message and, when one field is at
/// fault, the path of that field (`param`, e.g. `contacts[0].email`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// Decides the HTTP status and the error `type`.
    pub kind: ErrorKind,
    /// Stable, documented, snake_case; clients branch on it.
    pub code: Cow<'static, str>,
    /// For people; may change wording between versions.
    pub message: String,
    /// The offending request field, as a path from the body's root.
    pub param: Option<String>,
    /// On a uniqueness conflict, the id of the resource that already holds the value.
    pub existing_id: Option<String>,
}

/// Result alias used across the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of any kind; prefer the named constructors below.
    pub fn new(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            param: None,
            existing_id: None,
        }
    }

    /// Malformed input (400).
    pub fn invalid(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, code, message)
    }

    /// Well-formed input that breaks a business rule (422).
    pub fn unprocessable(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, message)
    }

    /// A missing resource (404), named so the client knows which id was unknown.
    pub fn not_found(resource: &str, id: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "resource_missing",
            format!("no {resource} with id '{id}'"),
        )
    }

    /// A clash with stored state (409).
    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// A transient failure of a dependency (503): the client may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, "service_unavailable", message)
    }

    /// A failure on our side (500). The message is logged, not shown to clients.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal_error", message)
    }

    /// Whether retrying later may succeed: a dependency was unavailable, or another writer got
    /// there first. Anything else (bad input, a bug) fails the same way again.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Conflict)
    }

    /// Prefixes the error's field path with `field`, so nested validation reports the full path:
    /// `Error::..at("email").at("contacts[0]")` → `contacts[0].email`.
    #[must_use]
    pub fn at(mut self, field: impl AsRef<str>) -> Self {
        let field = field.as_ref();
        self.param = Some(match self.param.take() {
            None => field.to_owned(),
            Some(inner) if inner.starts_with('[') => format!("{field}{inner}"),
            Some(inner) => format!("{field}.{inner}"),
        });
        self
    }

    /// Attaches the id that already holds a unique value, for 409 answers.
    #[must_use]
    pub fn with_existing_id(mut self, id: impl Into<String>) -> Self {
        self.existing_id = Some(id.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_nest_from_the_inside_out() {
        let e = Error::unprocessable("invalid_email", "bad")
            .at("email")
            .at("contacts[0]");
        assert_eq!(e.param.as_deref(), Some("contacts[0].email"));
        let e = Error::invalid("x", "y").at("[2]").at("tags");
        assert_eq!(e.param.as_deref(), Some("tags[2]"));
    }
}
