//! Small validated text types shared by several resources. Each trims nothing silently: what a
//! client sends is what we store, or it is refused with a reason.

use crate::error::{Error, Result};

/// Checks a free-text value: not blank, at most `max` characters, no control characters.
/// `code` names the failure for clients (e.g. `invalid_name`).
pub(crate) fn check_text(raw: &str, max: usize, code: &'static str, what: &str) -> Result<()> {
    if raw.trim().is_empty() {
        return Err(Error::unprocessable(
            code,
            format!("{what} must not be blank"),
        ));
    }
    if raw.chars().count() > max {
        return Err(Error::unprocessable(
            code,
            format!("{what} must be at most {max} characters"),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(Error::unprocessable(
            code,
            format!("{what} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Declares a string newtype whose constructor runs `check_text` with the given limits.
macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, code = $code:literal, what = $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Accepts a non-blank value of at most `MAX_CHARS` characters without control characters.
            pub fn parse(raw: impl Into<String>) -> $crate::error::Result<Self> {
                let raw = raw.into();
                $crate::text::check_text(&raw, $max, $code, $what)?;
                Ok(Self(raw))
            }

            /// The value as sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::error::Error;
            fn try_from(raw: String) -> $crate::error::Result<Self> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use bounded_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_long_and_control_text_is_refused() {
        assert!(check_text("ok", 5, "c", "x").is_ok());
        assert!(check_text("  ", 5, "c", "x").is_err());
        assert!(check_text("toolong", 5, "c", "x").is_err());
        assert!(check_text("a\nb", 5, "c", "x").is_err());
        // Characters, not bytes: five accented letters fit in five.
        assert!(check_text("ééééé", 5, "c", "x").is_ok());
    }
}
