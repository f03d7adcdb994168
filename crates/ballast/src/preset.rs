//! [`Preset`]: what Ballast knows about each provider out of the box.

use ballast_classify::Provider;

/// A provider preset: its dialect, where its API lives, which environment variables name
/// its key and base URL, and whether its documented rate limits can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// xAI (Grok).
    XAi,
    /// OpenAI.
    OpenAi,
    /// Anthropic (Claude).
    Anthropic,
    /// Google Gemini API.
    Gemini,
    /// Any OpenAI-compatible API; set its base URL.
    OpenAiCompatible,
}

impl Preset {
    /// The classifier dialect and key rules.
    pub const fn provider(self) -> Provider {
        match self {
            Self::XAi => Provider::XAi,
            Self::OpenAi => Provider::OpenAi,
            Self::Anthropic => Provider::Anthropic,
            Self::Gemini => Provider::Gemini,
            Self::OpenAiCompatible => Provider::OpenAiCompatible,
        }
    }

    /// The API's base URL, when it has a public one.
    pub const fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::XAi => Some("https://api.x.ai/v1"),
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com/v1"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            Self::OpenAiCompatible => None,
        }
    }

    /// The environment variable holding the API key.
    pub const fn key_var(self) -> &'static str {
        match self {
            Self::XAi => "XAI_API_KEY",
            Self::OpenAi => "OPENAI_API_KEY",
            Self::Anthropic => "ANTHROPIC_API_KEY",
            Self::Gemini => "GEMINI_API_KEY",
            Self::OpenAiCompatible => "LLM_API_KEY",
        }
    }

    /// The environment variable that overrides the base URL.
    pub const fn base_url_var(self) -> &'static str {
        match self {
            Self::XAi => "XAI_BASE_URL",
            Self::OpenAi => "OPENAI_BASE_URL",
            Self::Anthropic => "ANTHROPIC_BASE_URL",
            Self::Gemini => "GEMINI_BASE_URL",
            Self::OpenAiCompatible => "LLM_BASE_URL",
        }
    }

    /// Its short name (`xai`, `openai`, `anthropic`, `gemini`, `openai_compatible`), as
    /// `BALLAST_FALLBACKS` spells it and routes name their targets.
    pub const fn name(self) -> &'static str {
        match self {
            Self::XAi => "xai",
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::OpenAiCompatible => "openai_compatible",
        }
    }

    /// The API it speaks, for a route's translation ([`RouteBuilder`](crate::RouteBuilder)).
    pub const fn api(self) -> ballast_route::Api {
        match self {
            Self::Anthropic => ballast_route::Api::Anthropic,
            Self::Gemini => ballast_route::Api::Gemini,
            Self::XAi | Self::OpenAi | Self::OpenAiCompatible => ballast_route::Api::OpenAi,
        }
    }

    /// A sensible default model.
    pub const fn default_model(self) -> &'static str {
        match self {
            Self::XAi => "grok-code-fast-1",
            Self::OpenAi => "gpt-5-mini",
            Self::Anthropic => "claude-sonnet-4-5",
            Self::Gemini => "gemini-2.5-flash",
            Self::OpenAiCompatible => "default",
        }
    }

    /// Whether the provider's documented rate limits are known to overstate what it
    /// enforces (xAI documents 480 requests/min and answers 429 at 150 to 250), so the
    /// adaptive throttle should be on by default.
    pub const fn limits_lie(self) -> bool {
        matches!(self, Self::XAi)
    }

    /// The request rate the provider documents for the default model, where it publishes
    /// one for everyone: where the throttle starts before it learns the real one.
    pub const fn documented_rpm(self) -> Option<u32> {
        match self {
            Self::XAi => Some(480),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_complete() {
        for preset in [
            Preset::XAi,
            Preset::OpenAi,
            Preset::Anthropic,
            Preset::Gemini,
            Preset::OpenAiCompatible,
        ] {
            assert!(preset.key_var().ends_with("_API_KEY"));
            assert!(preset.base_url_var().ends_with("_BASE_URL"));
            if let Some(url) = preset.default_base_url() {
                assert!(url.starts_with("https://"), "{url}");
            }
        }
        assert!(Preset::XAi.limits_lie());
        assert_eq!(Preset::XAi.documented_rpm(), Some(480));
        assert_eq!(Preset::Gemini.provider(), Provider::Gemini);
    }
}
