//! [`Config`]: the story's knobs, from the environment, checked.

use std::fmt;
use std::time::Duration;

use ballast_classify::{ApiKey, KeyError};
use ballast_cost::Usd;

use crate::Preset;

/// How a Ballast client is set up. The defaults are the story's: a 90 s timeout per attempt,
/// 3 attempts, $50 a day, 500 output tokens when a request sets no cap.
#[derive(Debug, Clone)]
pub struct Config {
    /// The provider.
    pub preset: Preset,
    /// The API key, checked; `None` when the environment has none (demos then use the
    /// simulated provider).
    pub api_key: Option<ApiKey>,
    /// The API's base URL.
    pub base_url: http::Uri,
    /// The daily budget (`DAILY_BUDGET_USD`).
    pub daily_budget: Usd,
    /// Output tokens assumed when a request sets no cap (`MAX_TOKENS_DEFAULT`).
    pub max_tokens_default: u64,
    /// The per-attempt timeout (`REQUEST_TIMEOUT`: seconds, or `90s`, `2m`).
    pub request_timeout: Duration,
    /// Calls per logical request, the first included.
    pub max_attempts: u32,
}

/// A configuration value that cannot be used. Names the variable and what it expected;
/// never shows a key or a URL's credentials. Its `Debug` is its sentence too, so a `main`
/// that returns it prints something a person can act on.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Owned only for a named account's variables (`XAI_API_KEY_EU`).
    variable: std::borrow::Cow<'static, str>,
    problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Problem {
    Invalid {
        value: String,
        expected: &'static str,
    },
    Key(KeyError),
    Missing {
        expected: &'static str,
    },
    /// Set, but not UTF-8.
    NotUnicode,
    /// A URL with a user or password in it.
    Credentials,
}

impl ConfigError {
    /// The variable at fault.
    pub fn variable(&self) -> &str {
        &self.variable
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Problem::Invalid { value, expected } => {
                write!(
                    f,
                    "{}={value:?} is not valid: expected {expected}",
                    self.variable
                )
            }
            Problem::Key(error) => write!(f, "{}: {error}", self.variable),
            Problem::Missing { expected } => {
                write!(f, "{} is not set: expected {expected}", self.variable)
            }
            Problem::NotUnicode => write!(
                f,
                "{} is not valid UTF-8: set it to plain text (it was not used)",
                self.variable
            ),
            Problem::Credentials => write!(
                f,
                "{} holds a user or password (user:password@host): credentials do not go in the URL; put the key in the key variable",
                self.variable
            ),
        }
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

/// Values longer than this are cut in error messages.
const SHOWN: usize = 64;

fn invalid(variable: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError {
        variable: variable.into(),
        problem: Problem::Invalid {
            value: value.chars().take(SHOWN).collect(),
            expected,
        },
    }
}

impl Config {
    /// The defaults for `preset`, with no key.
    pub fn new(preset: Preset) -> Self {
        Self {
            preset,
            api_key: None,
            base_url: preset
                .default_base_url()
                .and_then(|url| url.parse().ok())
                .unwrap_or_else(|| http::Uri::from_static("http://127.0.0.1:8080/v1")),
            daily_budget: Usd::from_dollars(50),
            max_tokens_default: 500,
            request_timeout: Duration::from_secs(90),
            max_attempts: 3,
        }
    }

    /// Reads the preset's key and base URL variables (`XAI_API_KEY`, `XAI_BASE_URL`, ...),
    /// `DAILY_BUDGET_USD`, `MAX_TOKENS_DEFAULT` and `REQUEST_TIMEOUT` from the environment.
    /// Unset variables keep their defaults; a bad value is an error naming the variable.
    pub fn from_env(preset: Preset) -> Result<Self, ConfigError> {
        Self::from_os_vars(preset, |name| std::env::var_os(name))
    }

    /// As [`from_env`](Self::from_env), reading variables as the OS gives them through
    /// `var`: a value that is set but not UTF-8 is an error naming it, not a silent default
    /// (a budget falling back to $50, a key left out).
    pub fn from_os_vars(
        preset: Preset,
        var: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, ConfigError> {
        for variable in [
            preset.key_var(),
            preset.base_url_var(),
            "DAILY_BUDGET_USD",
            "MAX_TOKENS_DEFAULT",
            "REQUEST_TIMEOUT",
        ] {
            if var(variable).is_some_and(|value| value.to_str().is_none()) {
                return Err(ConfigError {
                    variable: variable.into(),
                    problem: Problem::NotUnicode,
                });
            }
        }
        Self::from_vars(preset, |name| var(name)?.into_string().ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `var` (for tests and other
    /// sources).
    pub fn from_vars(
        preset: Preset,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::new(preset);
        if let Some(key) = var(preset.key_var()) {
            let key = ApiKey::parse(preset.provider(), key).map_err(|error| ConfigError {
                variable: preset.key_var().into(),
                problem: Problem::Key(error),
            })?;
            config.api_key = Some(key);
        }
        if let Some(url) = var(preset.base_url_var()) {
            let expected = "an http or https URL such as https://api.x.ai/v1";
            // Credentials in the URL would be logged and echoed, and not used: refused,
            // without showing them.
            let authority = url
                .split_once("://")
                .map_or(url.as_str(), |(_, rest)| rest)
                .split(['/', '?', '#'])
                .next()
                .unwrap_or("");
            if authority.contains('@') {
                return Err(ConfigError {
                    variable: preset.base_url_var().into(),
                    problem: Problem::Credentials,
                });
            }
            let parsed: http::Uri = url
                .trim()
                .parse()
                .map_err(|_| invalid(preset.base_url_var(), &url, expected))?;
            if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
                return Err(invalid(preset.base_url_var(), &url, expected));
            }
            config.base_url = parsed;
        } else if preset.default_base_url().is_none() {
            return Err(ConfigError {
                variable: preset.base_url_var().into(),
                problem: Problem::Missing {
                    expected: "the base URL of the OpenAI-compatible API",
                },
            });
        }
        if let Some(value) = var("DAILY_BUDGET_USD") {
            config.daily_budget = value
                .trim()
                .parse()
                .ok()
                .filter(|budget: &Usd| {
                    *budget > Usd::ZERO && *budget <= Usd::from_dollars(1_000_000)
                })
                .ok_or_else(|| {
                    invalid(
                        "DAILY_BUDGET_USD",
                        &value,
                        "a dollar amount above 0 and up to 1000000, such as 50 or 12.5",
                    )
                })?;
        }
        if let Some(value) = var("MAX_TOKENS_DEFAULT") {
            config.max_tokens_default = value
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "MAX_TOKENS_DEFAULT",
                        &value,
                        "a whole number of tokens from 1 to 1000000, such as 500",
                    )
                })?;
        }
        if let Some(value) = var("REQUEST_TIMEOUT") {
            config.request_timeout = ballast_classify::hint::parse_go_duration(&value)
                .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(d))
                .ok_or_else(|| {
                    invalid(
                        "REQUEST_TIMEOUT",
                        &value,
                        "from 1 second to 1 hour: seconds (90) or a duration such as 90s or 2m",
                    )
                })?;
        }
        Ok(config)
    }
}

/// A fallback target named in `BALLAST_FALLBACKS`: its configuration (from its preset's own
/// variables), the model to ask it for (`None`: the caller's), and whether it shares the
/// load of the target before it.
#[derive(Debug, Clone)]
pub struct FallbackConfig {
    /// The target's configuration.
    pub config: Config,
    /// The model to ask it for.
    pub model: Option<String>,
    /// It serves alike with the target before it (`a | b`), and shares its load rather
    /// than waiting for it to fail ([`RouteBuilder::alongside`](crate::RouteBuilder::alongside)).
    pub alongside: bool,
}

impl Config {
    /// The fallback chain from `BALLAST_FALLBACKS`: targets in order, comma-separated, each
    /// `provider` or `provider:model`, the provider one of `xai`, `openai`, `anthropic`,
    /// `gemini`, `openai_compatible`; each reads its own key and base URL variables
    /// (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, `LLM_BASE_URL`, ...). Unset or empty: no
    /// fallbacks.
    ///
    /// A second account of a provider (another key, another region) is `provider@NAME`:
    /// its key from the preset's key variable suffixed `_NAME` (`xai@2` reads
    /// `XAI_API_KEY_2`, which must be set), its base URL from the base URL variable suffixed
    /// alike when set (`XAI_BASE_URL_2`), else the preset's; `NAME` is letters, digits and
    /// `_`. `| xai@2` puts a second xAI key beside the first.
    ///
    /// Anthropic and Gemini targets get chat requests translated (see
    /// [`RouteBuilder`](crate::RouteBuilder)).
    ///
    /// Targets joined by `|` serve alike and share their load (see
    /// [`RouteBuilder::alongside`](crate::RouteBuilder::alongside)); a list that begins
    /// with `|` shares the primary's: `| openai_compatible:x-ai/grok-code-fast-1, openai:gpt-4o-mini`
    /// spreads calls over the primary and the compatible target, with OpenAI behind both.
    ///
    /// ```
    /// use ballast::{Config, Preset};
    ///
    /// let vars = |name: &str| match name {
    ///     "BALLAST_FALLBACKS" => Some("openai:gpt-4o-mini, xai | gemini:gemini-2.5-flash".to_owned()),
    ///     _ => None,
    /// };
    /// let chain = Config::fallbacks_from_vars(vars).unwrap();
    /// assert_eq!(chain[0].config.preset, Preset::OpenAi);
    /// assert_eq!(chain[0].model.as_deref(), Some("gpt-4o-mini"));
    /// assert_eq!((chain[1].model.as_deref(), chain[1].alongside), (None, false));
    /// assert_eq!(chain[2].config.preset, Preset::Gemini);
    /// assert!(chain[2].alongside);
    /// ```
    pub fn fallbacks_from_env() -> Result<Vec<FallbackConfig>, ConfigError> {
        Self::fallbacks_from_vars(|name| std::env::var(name).ok())
    }

    /// As [`fallbacks_from_env`](Self::fallbacks_from_env), reading variables through `var`.
    pub fn fallbacks_from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<FallbackConfig>, ConfigError> {
        const VARIABLE: &str = "BALLAST_FALLBACKS";
        const EXPECTED: &str = "comma-separated provider, provider@ACCOUNT or either with :model, the provider one of xai, openai, anthropic, gemini, openai_compatible, those that share their load joined by |";
        let Some(value) = var(VARIABLE) else {
            return Ok(Vec::new());
        };
        let mut chain = Vec::new();
        let entries = value.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (n, entry) in entries.enumerate() {
            for (k, member) in entry.split('|').map(str::trim).enumerate() {
                // A list that begins with `|` shares the primary's load.
                if member.is_empty() && n == 0 && k == 0 {
                    continue;
                }
                let (provider, model) = match member.split_once(':') {
                    Some((provider, model)) if !model.trim().is_empty() => {
                        (provider.trim(), Some(model.trim().to_owned()))
                    }
                    Some(_) => return Err(invalid(VARIABLE, &value, EXPECTED)),
                    None => (member, None),
                };
                let (provider, account) = match provider.split_once('@') {
                    Some((provider, account)) => {
                        let account = account.trim();
                        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
                        if account.is_empty() || !account.chars().all(plain) {
                            return Err(invalid(VARIABLE, &value, EXPECTED));
                        }
                        (provider.trim(), Some(account.to_ascii_uppercase()))
                    }
                    None => (provider, None),
                };
                let preset = match provider.to_ascii_lowercase().as_str() {
                    "xai" => Preset::XAi,
                    "openai" => Preset::OpenAi,
                    "anthropic" => Preset::Anthropic,
                    "gemini" => Preset::Gemini,
                    "openai_compatible" | "compatible" => Preset::OpenAiCompatible,
                    _ => return Err(invalid(VARIABLE, &value, EXPECTED)),
                };
                let config = match &account {
                    None => Self::from_vars(preset, &var)?,
                    Some(account) => Self::of_account(preset, account, &var)?,
                };
                chain.push(FallbackConfig {
                    config,
                    model,
                    alongside: k > 0,
                });
            }
        }
        Ok(chain)
    }
}

impl Config {
    /// A second account's configuration: the preset's variables, its key's and base URL's
    /// suffixed `_{account}` (the key required, the base URL the preset's when unset).
    fn of_account(
        preset: Preset,
        account: &str,
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let key_var = format!("{}_{account}", preset.key_var());
        let url_var = format!("{}_{account}", preset.base_url_var());
        if var(&key_var).is_none() {
            return Err(ConfigError {
                variable: key_var.into(),
                problem: Problem::Missing {
                    expected: "the key of the account a provider@ACCOUNT target in BALLAST_FALLBACKS names",
                },
            });
        }
        let own = |name: &str| {
            if name == preset.key_var() {
                var(&key_var)
            } else if name == preset.base_url_var() {
                var(&url_var).or_else(|| var(name))
            } else {
                var(name)
            }
        };
        Self::from_vars(preset, own).map_err(|mut error| {
            // Named by the variable that was read.
            if error.variable == preset.key_var() {
                error.variable = key_var.into();
            } else if error.variable == preset.base_url_var() && var(&url_var).is_some() {
                error.variable = url_var.into();
            }
            error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_are_the_story() {
        let config = Config::from_vars(Preset::XAi, vars(&[])).unwrap();
        assert_eq!(config.daily_budget, Usd::from_dollars(50));
        assert_eq!(config.max_tokens_default, 500);
        assert_eq!(config.request_timeout, Duration::from_secs(90));
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.base_url, "https://api.x.ai/v1");
        assert!(config.api_key.is_none());
    }

    #[test]
    fn values_are_read_and_checked() {
        let config = Config::from_vars(
            Preset::XAi,
            vars(&[
                ("XAI_API_KEY", "xai-secret123"),
                ("XAI_BASE_URL", "http://127.0.0.1:9000/v1"),
                ("DAILY_BUDGET_USD", "12.5"),
                ("MAX_TOKENS_DEFAULT", "800"),
                ("REQUEST_TIMEOUT", "2m"),
            ]),
        )
        .unwrap();
        assert_eq!(config.api_key.unwrap().expose(), "xai-secret123");
        assert_eq!(config.base_url, "http://127.0.0.1:9000/v1");
        assert_eq!(config.daily_budget, "12.5".parse().unwrap());
        assert_eq!(config.max_tokens_default, 800);
        assert_eq!(config.request_timeout, Duration::from_secs(120));
        let config = Config::from_vars(Preset::XAi, vars(&[("REQUEST_TIMEOUT", "30")])).unwrap();
        assert_eq!(config.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_name_the_variable_and_never_the_key() {
        // (variables, the variable blamed, a word the message must contain)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case<'_>; 12] = [
            (
                &[("DAILY_BUDGET_USD", "fifty")],
                "DAILY_BUDGET_USD",
                "dollar amount",
            ),
            (&[("DAILY_BUDGET_USD", "0")], "DAILY_BUDGET_USD", "above 0"),
            (
                &[("DAILY_BUDGET_USD", "1e12")],
                "DAILY_BUDGET_USD",
                "up to 1000000",
            ),
            (
                &[("REQUEST_TIMEOUT", "1ns")],
                "REQUEST_TIMEOUT",
                "from 1 second to 1 hour",
            ),
            (
                &[("REQUEST_TIMEOUT", "30000h")],
                "REQUEST_TIMEOUT",
                "from 1 second to 1 hour",
            ),
            (
                &[("XAI_BASE_URL", "http://user:secret123@proxy.local/v1")],
                "XAI_BASE_URL",
                "credentials do not go in the URL",
            ),
            (
                &[("DAILY_BUDGET_USD", "-5")],
                "DAILY_BUDGET_USD",
                "dollar amount",
            ),
            (
                &[("MAX_TOKENS_DEFAULT", "0")],
                "MAX_TOKENS_DEFAULT",
                "whole number",
            ),
            (
                &[("REQUEST_TIMEOUT", "soon")],
                "REQUEST_TIMEOUT",
                "duration",
            ),
            (&[("XAI_BASE_URL", "api.x.ai")], "XAI_BASE_URL", "URL"),
            (
                &[("XAI_API_KEY", "xai-secret123\n")],
                "XAI_API_KEY",
                "whitespace",
            ),
            (&[("XAI_API_KEY", "sk-secret123")], "XAI_API_KEY", "xai-"),
        ];
        for (pairs, variable, hint) in cases {
            let error = Config::from_vars(Preset::XAi, vars(pairs)).unwrap_err();
            assert_eq!(error.variable(), variable);
            let text = error.to_string();
            assert!(text.contains(variable) && text.contains(hint), "{text}");
            assert!(!text.contains("secret123"), "{text}");
        }
        let error = Config::from_vars(Preset::OpenAiCompatible, vars(&[])).unwrap_err();
        assert_eq!(error.variable(), "LLM_BASE_URL");
        // What a `main` returning the error prints: the sentence, not a struct.
        assert_eq!(
            format!("{error:?}"),
            "LLM_BASE_URL is not set: expected the base URL of the OpenAI-compatible API"
        );
    }

    /// A variable set to bytes that are not UTF-8 is an error naming it, not a default.
    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        for variable in ["DAILY_BUDGET_USD", "XAI_API_KEY"] {
            let error = Config::from_os_vars(Preset::XAi, |name| {
                (name == variable).then(|| std::ffi::OsStr::from_bytes(b"5\xff0").to_owned())
            })
            .unwrap_err();
            assert_eq!(error.variable(), variable);
            assert!(error.to_string().contains("not valid UTF-8"), "{error}");
        }
        let fine = Config::from_os_vars(Preset::XAi, |name| {
            (name == "DAILY_BUDGET_USD").then(|| "12".into())
        })
        .unwrap();
        assert_eq!(fine.daily_budget, Usd::from_dollars(12));
    }

    /// `provider@ACCOUNT` reads a second account's key (required) and base URL (the
    /// preset's when unset) from the preset's variables suffixed `_ACCOUNT`; errors name
    /// the variable that was read.
    #[test]
    fn a_second_account_reads_its_own_key_and_address() {
        let chain = Config::fallbacks_from_vars(vars(&[
            ("BALLAST_FALLBACKS", "| xai@2, xai@eu:grok-4"),
            ("XAI_API_KEY", "xai-firstkey123"),
            ("XAI_API_KEY_2", "xai-secondkey456"),
            ("XAI_API_KEY_EU", "xai-thirdkey789"),
            ("XAI_BASE_URL_EU", "https://eu.api.x.ai/v1"),
        ]))
        .unwrap();
        let key = |i: usize| {
            let config: &Config = &chain[i].config;
            config.api_key.as_ref().unwrap().expose().to_owned()
        };
        assert_eq!(
            (key(0).as_str(), chain[0].alongside),
            ("xai-secondkey456", true)
        );
        assert_eq!(chain[0].config.base_url, "https://api.x.ai/v1");
        assert_eq!(key(1), "xai-thirdkey789");
        assert_eq!(chain[1].config.base_url, "https://eu.api.x.ai/v1");
        assert_eq!(chain[1].model.as_deref(), Some("grok-4"));
        let missing = Config::fallbacks_from_vars(vars(&[
            ("BALLAST_FALLBACKS", "xai@backup"),
            ("XAI_API_KEY", "xai-firstkey123"),
        ]))
        .unwrap_err();
        assert_eq!(missing.variable(), "XAI_API_KEY_BACKUP");
        let bad_key = Config::fallbacks_from_vars(vars(&[
            ("BALLAST_FALLBACKS", "xai@2"),
            ("XAI_API_KEY_2", "sk-not-an-xai-key"),
        ]))
        .unwrap_err();
        assert_eq!(bad_key.variable(), "XAI_API_KEY_2");
        assert!(!format!("{bad_key}").contains("not-an-xai"), "{bad_key}");
        for bad in ["xai@", "xai@e-u", "xai@ 2 x"] {
            let error =
                Config::fallbacks_from_vars(vars(&[("BALLAST_FALLBACKS", bad)])).unwrap_err();
            assert_eq!(error.variable(), "BALLAST_FALLBACKS", "{bad}");
        }
    }

    #[test]
    fn fallbacks_are_read_and_checked() {
        let chain = Config::fallbacks_from_vars(vars(&[
            (
                "BALLAST_FALLBACKS",
                " openai:gpt-4o-mini ,openai_compatible",
            ),
            ("LLM_BASE_URL", "http://127.0.0.1:9/v1"),
            ("OPENAI_API_KEY", "sk-secret123"),
        ]))
        .unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].config.preset, Preset::OpenAi);
        assert_eq!(chain[0].model.as_deref(), Some("gpt-4o-mini"));
        assert!(chain[0].config.api_key.is_some());
        assert_eq!(chain[1].config.preset, Preset::OpenAiCompatible);
        assert_eq!(chain[1].config.base_url, "http://127.0.0.1:9/v1");
        assert!(Config::fallbacks_from_vars(vars(&[])).unwrap().is_empty());
        let chain = Config::fallbacks_from_vars(vars(&[(
            "BALLAST_FALLBACKS",
            "anthropic,gemini:gemini-2.5-flash",
        )]))
        .unwrap();
        assert_eq!(chain[0].config.preset, Preset::Anthropic);
        assert_eq!(chain[0].model, None);
        assert_eq!(chain[1].config.preset, Preset::Gemini);
        assert_eq!(chain[1].model.as_deref(), Some("gemini-2.5-flash"));
        // `|` joins targets that share their load; a leading one joins the primary.
        let chain = Config::fallbacks_from_vars(vars(&[(
            "BALLAST_FALLBACKS",
            " | anthropic, xai | gemini:gemini-2.5-flash|xai",
        )]))
        .unwrap();
        let shape: Vec<(Preset, bool)> = chain
            .iter()
            .map(|target| (target.config.preset, target.alongside))
            .collect();
        assert_eq!(
            shape,
            [
                (Preset::Anthropic, true),
                (Preset::XAi, false),
                (Preset::Gemini, true),
                (Preset::XAi, true),
            ]
        );
        for bad in [
            "claude",
            "openai:",
            "nope",
            "xai,,gemini:",
            "xai|",
            "|",
            "xai, | gemini",
        ] {
            let error =
                Config::fallbacks_from_vars(vars(&[("BALLAST_FALLBACKS", bad)])).unwrap_err();
            assert_eq!(error.variable(), "BALLAST_FALLBACKS", "{bad}");
            assert!(
                error
                    .to_string()
                    .contains("xai, openai, anthropic, gemini, openai_compatible"),
                "{error}"
            );
        }
        // A fallback's own variables are checked, and named, like the primary's.
        let error =
            Config::fallbacks_from_vars(vars(&[("BALLAST_FALLBACKS", "openai_compatible")]))
                .unwrap_err();
        assert_eq!(error.variable(), "LLM_BASE_URL");
        let error = Config::fallbacks_from_vars(vars(&[
            ("BALLAST_FALLBACKS", "openai"),
            ("OPENAI_API_KEY", "sk-secret123 "),
        ]))
        .unwrap_err();
        assert_eq!(error.variable(), "OPENAI_API_KEY");
        assert!(!error.to_string().contains("secret123"), "{error}");
    }
}
