//! [`ApiKey`]: a checked, never-printed API key.
//!
//! Most 401s in production are not revoked keys but pasted ones: a trailing newline from a
//! `.env` file, a space, another provider's key. Checking the shape before the first request
//! turns a confusing provider error into one that says what to fix.

use std::fmt;

use http::{HeaderName, HeaderValue};

use crate::Provider;

/// An API key that passed [`ApiKey::parse`]. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    secret: Box<str>,
}

impl ApiKey {
    /// Checks a key's shape for `provider` before any request is sent.
    ///
    /// Rejects: an empty key; leading or trailing whitespace; any control character (a
    /// newline inside); characters an HTTP header cannot carry; and, for providers whose keys
    /// have a fixed prefix (xAI `xai-`, OpenAI `sk-`, Anthropic `sk-ant-`), a missing prefix.
    /// The error says what to fix and never contains the key.
    ///
    /// ```
    /// use ballast_classify::{ApiKey, KeyError, Provider};
    ///
    /// assert!(ApiKey::parse(Provider::XAi, "xai-abc123").is_ok());
    /// let err = ApiKey::parse(Provider::XAi, "xai-abc123\n").unwrap_err();
    /// assert_eq!(err, KeyError::SurroundingWhitespace);
    /// assert!(!err.to_string().contains("abc123"));
    /// ```
    pub fn parse(provider: Provider, key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.trim() != key {
            return Err(KeyError::SurroundingWhitespace);
        }
        if key.chars().any(char::is_control) {
            return Err(KeyError::ControlCharacter);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyError::NotHeaderSafe);
        }
        if let Some(expected) = provider.key_prefix()
            && !key.starts_with(expected)
        {
            return Err(KeyError::MissingPrefix {
                provider: provider.name(),
                expected,
            });
        }
        Ok(Self {
            secret: key.into_boxed_str(),
        })
    }

    /// The key itself. Call this only where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// The header `provider` expects the key in, marked sensitive so that `http` and
    /// tracing layers that honour the flag never print it.
    ///
    /// xAI, OpenAI and compatibles: `authorization: Bearer <key>`; Anthropic: `x-api-key`;
    /// Gemini: `x-goog-api-key`.
    pub fn header(&self, provider: Provider) -> (HeaderName, HeaderValue) {
        let (name, value) = match provider {
            Provider::Anthropic => (
                HeaderName::from_static("x-api-key"),
                HeaderValue::from_str(&self.secret),
            ),
            Provider::Gemini => (
                HeaderName::from_static("x-goog-api-key"),
                HeaderValue::from_str(&self.secret),
            ),
            _ => (
                http::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {}", self.secret)),
            ),
        };
        // `parse` allowed only visible ASCII, which every header value can carry.
        let mut value = value.unwrap_or_else(|_| HeaderValue::from_static(""));
        value.set_sensitive(true);
        (name, value)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// Why a key was rejected. The message says what to fix and never contains the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    Empty,
    /// The key starts or ends with whitespace (often a newline from a `.env` file or `echo`).
    SurroundingWhitespace,
    /// The key contains a control character, such as a newline in the middle.
    ControlCharacter,
    /// The key contains characters an HTTP header cannot carry (non-ASCII or inner spaces).
    NotHeaderSafe,
    /// The key lacks the provider's prefix.
    MissingPrefix {
        /// The provider's name.
        provider: &'static str,
        /// The prefix its keys start with.
        expected: &'static str,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the API key is empty; set it in the environment"),
            Self::SurroundingWhitespace => f.write_str(
                "the API key has leading or trailing whitespace; trim it \
                 (a trailing newline from a .env file or `echo` is the usual cause)",
            ),
            Self::ControlCharacter => f.write_str(
                "the API key contains a control character such as a newline; \
                 copy it again as one line",
            ),
            Self::NotHeaderSafe => f.write_str(
                "the API key contains spaces or non-ASCII characters; \
                 copy it again from the provider's console",
            ),
            Self::MissingPrefix { provider, expected } => write!(
                f,
                "{provider} API keys start with `{expected}` and this one does not; \
                 check that the variable holds a {provider} key, not another provider's"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3tCANARY";

    #[test]
    fn accepts_well_formed_keys() {
        for (provider, key) in [
            (Provider::XAi, format!("xai-{SECRET}")),
            (Provider::OpenAi, format!("sk-proj-{SECRET}")),
            (Provider::Anthropic, format!("sk-ant-api03-{SECRET}")),
            (Provider::Gemini, format!("AIza{SECRET}")),
            (Provider::OpenAiCompatible, SECRET.to_owned()),
        ] {
            let parsed = ApiKey::parse(provider, key.clone()).unwrap();
            assert_eq!(parsed.expose(), key);
            assert!(!format!("{parsed:?}").contains(SECRET));
        }
    }

    #[test]
    fn rejects_with_a_fix_and_without_the_key() {
        let cases = [
            (Provider::XAi, String::new(), KeyError::Empty),
            (
                Provider::XAi,
                format!("xai-{SECRET}\n"),
                KeyError::SurroundingWhitespace,
            ),
            (
                Provider::XAi,
                format!(" xai-{SECRET}"),
                KeyError::SurroundingWhitespace,
            ),
            (
                Provider::XAi,
                format!("xai-{SECRET}\r\nX-Evil: 1"),
                KeyError::ControlCharacter,
            ),
            (
                Provider::OpenAiCompatible,
                format!("a {SECRET}"),
                KeyError::NotHeaderSafe,
            ),
            (
                Provider::OpenAiCompatible,
                format!("é{SECRET}"),
                KeyError::NotHeaderSafe,
            ),
            (
                Provider::XAi,
                format!("sk-{SECRET}"),
                KeyError::MissingPrefix {
                    provider: "xai",
                    expected: "xai-",
                },
            ),
            (
                Provider::Anthropic,
                format!("sk-{SECRET}"),
                KeyError::MissingPrefix {
                    provider: "anthropic",
                    expected: "sk-ant-",
                },
            ),
        ];
        for (provider, key, want) in cases {
            let err = ApiKey::parse(provider, key).unwrap_err();
            assert_eq!(err, want);
            let text = format!("{err} {err:?}");
            assert!(!text.contains(SECRET), "{text}");
        }
    }

    #[test]
    fn header_is_sensitive_and_placed_per_provider() {
        let key = ApiKey::parse(Provider::XAi, format!("xai-{SECRET}")).unwrap();
        let (name, value) = key.header(Provider::XAi);
        assert_eq!(name, http::header::AUTHORIZATION);
        assert_eq!(value.to_str().unwrap(), format!("Bearer xai-{SECRET}"));
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains(SECRET));
        assert_eq!(key.header(Provider::Anthropic).0, "x-api-key");
        assert_eq!(key.header(Provider::Gemini).0, "x-goog-api-key");
    }
}
