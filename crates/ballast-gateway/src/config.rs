//! [`GatewayConfig`]: the gateway's own settings, and [`Settings`], where every setting is
//! read from (the environment, over an optional TOML file).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use ballast::{Config, FallbackConfig, Preset};

/// Every variable a settings file may set, by its key in the file (the variable's name in
/// lower case, `BALLAST_` left off). API keys and the admin token are not among them:
/// secrets stay in the environment.
const FILE_KEYS: &[(&str, &str)] = &[
    ("provider", "BALLAST_PROVIDER"),
    ("listen", "BALLAST_LISTEN"),
    ("throttle", "BALLAST_THROTTLE"),
    ("fallbacks", "BALLAST_FALLBACKS"),
    ("body_timeout", "BALLAST_BODY_TIMEOUT"),
    ("header_timeout", "BALLAST_HEADER_TIMEOUT"),
    ("max_connections", "BALLAST_MAX_CONNECTIONS"),
    ("log_format", "BALLAST_LOG_FORMAT"),
    ("hedge", "BALLAST_HEDGE"),
    ("cache_ttl", "BALLAST_CACHE_TTL"),
    ("cache_mb", "BALLAST_CACHE_MB"),
    ("daily_budget_usd", "DAILY_BUDGET_USD"),
    ("max_tokens_default", "MAX_TOKENS_DEFAULT"),
    ("request_timeout", "REQUEST_TIMEOUT"),
    ("xai_base_url", "XAI_BASE_URL"),
    ("openai_base_url", "OPENAI_BASE_URL"),
    ("anthropic_base_url", "ANTHROPIC_BASE_URL"),
    ("gemini_base_url", "GEMINI_BASE_URL"),
    ("llm_base_url", "LLM_BASE_URL"),
];

/// Where settings come from: each variable from the environment when it is set there, else
/// from the TOML file `BALLAST_CONFIG` names (if any).
///
/// ```
/// use ballast_gateway::Settings;
///
/// let settings = Settings::from_toml("listen = \"0.0.0.0:9000\"\ndaily_budget_usd = 20\n", |_| None).unwrap();
/// assert_eq!(settings.get("BALLAST_LISTEN").unwrap(), "0.0.0.0:9000");
/// assert_eq!(settings.get("DAILY_BUDGET_USD").unwrap(), "20");
///
/// let error = Settings::from_toml("xai_api_key = \"xai-123\"", |_| None).unwrap_err();
/// assert!(error.to_string().contains("keep secrets in the environment"));
/// ```
pub struct Settings {
    file: BTreeMap<&'static str, String>,
    client_keys: Vec<toml::Table>,
    routes: Vec<toml::Table>,
    env: Box<EnvLookup>,
}

/// How a variable is looked up in the environment.
type EnvLookup = dyn Fn(&str) -> Option<OsString> + Send + Sync;

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are not shown: a base URL may still be on its way to being refused for
        // the credentials in it.
        f.debug_struct("Settings")
            .field("file_keys", &self.file.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// The process environment, over the file `BALLAST_CONFIG` names, if it names one.
    pub fn from_env() -> Result<Self, GatewayError> {
        let env = |name: &str| std::env::var_os(name);
        match env("BALLAST_CONFIG") {
            None => Ok(Self::from_toml("", env)?),
            Some(path) => Self::from_file(Path::new(&path), env),
        }
    }

    /// `env` over the TOML file at `path`.
    pub fn from_file(
        path: &Path,
        env: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static,
    ) -> Result<Self, GatewayError> {
        let text = std::fs::read_to_string(path).map_err(|error| GatewayError::File {
            path: path.display().to_string(),
            problem: error.to_string(),
        })?;
        Self::from_toml(&text, env).map_err(|error| match error {
            GatewayError::File { problem, .. } => GatewayError::File {
                path: path.display().to_string(),
                problem,
            },
            other => other,
        })
    }

    /// `env` over the settings in `text` (TOML: a flat table of the keys in `FILE_KEYS`,
    /// each a string, an integer or a float).
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static,
    ) -> Result<Self, GatewayError> {
        let problem = |problem: String| GatewayError::File {
            path: "the settings file".to_owned(),
            problem,
        };
        let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
            // The parser's message, without the line it quotes (a secret may be on it).
            problem(error.message().to_owned())
        })?;
        let mut file = BTreeMap::new();
        let mut client_keys = Vec::new();
        let mut routes = Vec::new();
        for (key, value) in table {
            if key == "client_keys" || key == "routes" {
                let tables = |value: toml::Value| -> Option<Vec<toml::Table>> {
                    let toml::Value::Array(entries) = value else {
                        return None;
                    };
                    entries
                        .into_iter()
                        .map(|entry| match entry {
                            toml::Value::Table(table) => Some(table),
                            _ => None,
                        })
                        .collect()
                };
                let Some(entries) = tables(value) else {
                    return Err(problem(format!(
                        "{key}: expected an array of tables ([[{key}]])"
                    )));
                };
                if key == "routes" {
                    routes.extend(entries);
                } else {
                    client_keys.extend(entries);
                }
                continue;
            }
            if key.ends_with("api_key") || key.contains("token") || key.contains("secret") {
                return Err(problem(format!(
                    "{key}: keep secrets in the environment, not in a file"
                )));
            }
            let Some(&(_, variable)) = FILE_KEYS.iter().find(|(name, _)| *name == key) else {
                let known: Vec<&str> = FILE_KEYS.iter().map(|(name, _)| *name).collect();
                return Err(problem(format!(
                    "unknown key {key:?}; expected one of {}",
                    known.join(", ")
                )));
            };
            let value = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                _ => {
                    return Err(problem(format!("{key}: expected a string or a number")));
                }
            };
            file.insert(variable, value);
        }
        Ok(Self {
            file,
            client_keys,
            routes,
            env: Box::new(env),
        })
    }

    /// `name`'s value as the OS gives it: the environment's, else the file's.
    pub fn get_os(&self, name: &str) -> Option<OsString> {
        (self.env)(name).or_else(|| self.file.get(name).map(OsString::from))
    }

    /// `name`'s value, if it is set and is UTF-8 (see [`get_os`](Self::get_os) to tell
    /// the two apart).
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_os(name).and_then(|value| value.into_string().ok())
    }

    /// `name`'s value: `None` when unset, an error naming it when it is not UTF-8.
    fn text(&self, name: &'static str) -> Result<Option<String>, GatewayError> {
        match self.get_os(name) {
            None => Ok(None),
            Some(value) => value
                .into_string()
                .map(Some)
                .map_err(|_| GatewayError::Invalid {
                    variable: name,
                    problem: "the value is not valid UTF-8".to_owned(),
                }),
        }
    }
}

/// A setting that cannot be used, told in words (its `Debug` is its `Display`).
#[derive(Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// A gateway variable's value.
    Invalid {
        /// The variable.
        variable: &'static str,
        /// What is wrong with it (never the value itself when it may be a secret).
        problem: String,
    },
    /// The settings file.
    File {
        /// Its path.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A provider setting, as the facade reads it.
    Provider(ballast::ConfigError),
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { variable, problem } => write!(f, "{variable}: {problem}"),
            Self::File { path, problem } => write!(f, "{path}: {problem}"),
            Self::Provider(error) => write!(f, "{error}"),
        }
    }
}

impl fmt::Debug for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for GatewayError {}

impl From<ballast::ConfigError> for GatewayError {
    fn from(error: ballast::ConfigError) -> Self {
        Self::Provider(error)
    }
}

/// How the throttle is set (`BALLAST_THROTTLE`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThrottleSetting {
    /// The preset's own: on where its documented limits lie (xAI), off elsewhere.
    Auto,
    /// No throttle.
    Off,
    /// On, starting at this many requests per minute.
    PerMinute(f64),
}

/// The log's format (`BALLAST_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text with colour on a terminal, JSON lines anywhere else.
    Auto,
    /// JSON lines.
    Json,
    /// Plain text (colour only on a terminal).
    Text,
}

/// The admin routes' bearer token (`BALLAST_ADMIN_TOKEN`), compared in constant time;
/// `Debug` never shows it.
#[derive(Clone)]
pub struct AdminToken(Box<str>);

impl AdminToken {
    /// Whether `offered` is the token.
    pub fn matches(&self, offered: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(offered.as_bytes()).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(****)")
    }
}

/// Everything the gateway reads at start: its own settings, the primary provider's and
/// the fallback chain's.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen (`BALLAST_LISTEN`, default `127.0.0.1:8080`): an address or a host
    /// name with a port.
    pub listen: String,
    /// The primary provider (`BALLAST_PROVIDER`: `xai` (default), `openai`, `anthropic`,
    /// `gemini`, `openai_compatible`) and its settings as the facade reads them.
    pub provider: Config,
    /// The fallbacks after it (`BALLAST_FALLBACKS`).
    pub fallbacks: Vec<FallbackConfig>,
    /// The throttle of a gateway without fallbacks (`BALLAST_THROTTLE`: `auto`, `off`, or
    /// requests per minute); each target of a fallback chain keeps its preset's.
    pub throttle: ThrottleSetting,
    /// The admin routes' token (`BALLAST_ADMIN_TOKEN`, at least 16 characters); without
    /// it the admin routes do not exist.
    pub admin_token: Option<AdminToken>,
    /// How long a request's whole body may take to arrive (`BALLAST_BODY_TIMEOUT`, seconds,
    /// default 30): a body still arriving after it is answered 408.
    pub body_timeout: Duration,
    /// How long a connection may take to send a request's headers
    /// (`BALLAST_HEADER_TIMEOUT`, seconds, default 10).
    pub header_timeout: Duration,
    /// Connections served at once (`BALLAST_MAX_CONNECTIONS`, default 1024).
    pub max_connections: usize,
    /// The log's format (`BALLAST_LOG_FORMAT`: `auto` (default), `json`, `text`).
    pub log_format: LogFormat,
    /// Hedging of slow calls (`BALLAST_HEDGE`: `on` (default) or `off`: another attempt
    /// for a call slower than 199 in 200 recent answers of its model, at most 10% extra calls; for
    /// providers that hang, as xAI's did).
    pub hedge: bool,
    /// How long an answer is kept to answer the same call again (`BALLAST_CACHE_TTL`,
    /// seconds, `0` or unset: no cache): see README.md, "The answer cache".
    pub cache_ttl: Option<Duration>,
    /// The most the answer cache holds (`BALLAST_CACHE_MB`, mebibytes, default 64).
    pub cache_bytes: u64,
    /// Named routes (`[[routes]]` in the file: `model`, the name callers ask for, and
    /// `chain`, its targets as `BALLAST_FALLBACKS` writes them, e.g.
    /// `"xai:grok-code-fast-1, openai:gpt-4o-mini"`): a call asking for a route's name goes
    /// down its chain, each target asked for its own model; any other call goes to the
    /// provider and its fallbacks.
    pub routes: Vec<NamedRoute>,
    /// The callers' keys (`[[client_keys]]` in the file, or `BALLAST_CLIENT_KEYS`): with
    /// any, a call must carry one as its bearer token, and is held to its key's budget.
    pub client_keys: Vec<ClientKey>,
}

/// A route callers reach by asking for its name as their model.
#[derive(Debug, Clone)]
pub struct NamedRoute {
    /// The name callers ask for.
    pub model: String,
    /// Its targets, first first, each with the model it is asked for.
    pub chain: Vec<FallbackConfig>,
}

/// The `[[routes]]` tables of the settings file, each chain read as `BALLAST_FALLBACKS` is
/// (each provider's key and base URL from its own variables).
fn named_routes(settings: &Settings) -> Result<Vec<NamedRoute>, GatewayError> {
    let mut routes: Vec<NamedRoute> = Vec::new();
    for table in &settings.routes {
        let problem = |problem: String| GatewayError::Invalid {
            variable: "routes",
            problem,
        };
        for field in table.keys() {
            if !matches!(field.as_str(), "model" | "chain") {
                return Err(problem(format!(
                    "unknown field {field:?}; expected model, chain"
                )));
            }
        }
        let text = |field: &str| match table.get(field) {
            Some(toml::Value::String(text)) if !text.trim().is_empty() => {
                Ok(text.trim().to_owned())
            }
            _ => Err(problem(format!("each route needs a {field} (a string)"))),
        };
        let model = text("model")?;
        let chain_text = text("chain")?;
        if routes.iter().any(|route| route.model == model) {
            return Err(problem(format!("route {model:?} is given twice")));
        }
        let chain = Config::fallbacks_from_vars(|name| {
            if name == "BALLAST_FALLBACKS" {
                Some(chain_text.clone())
            } else {
                settings.get(name)
            }
        })
        .map_err(|error| {
            problem(format!(
                "route {model:?}: {}",
                error.to_string().replace("BALLAST_FALLBACKS", "its chain")
            ))
        })?;
        if chain.is_empty() {
            return Err(problem(format!("route {model:?} has no target")));
        }
        routes.push(NamedRoute { model, chain });
    }
    Ok(routes)
}

/// A caller's key, kept as its SHA-256 (the key itself is never stored or logged), with
/// the budget scope it is counted in and that scope's own daily budget, if any.
#[derive(Clone, PartialEq)]
pub struct ClientKey {
    /// Its name: the budget scope its calls are counted in.
    pub name: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// The scope's daily budget (within the global one); `None`: the global one only.
    pub daily_budget: Option<ballast::cost::Usd>,
    /// The key's share of the gateway: at most this many calls a minute (a burst of ten
    /// seconds' worth), 429 past it; `None`: no cap of its own.
    pub rpm: Option<f64>,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("name", &self.name)
            .field("daily_budget", &self.daily_budget)
            .field("rpm", &self.rpm)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// The SHA-256 of `key`, in lower-case hex: what a settings file keeps for it
    /// (`ballast-gateway hash-key` prints it).
    pub fn hash(key: &str) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn parse(
        name: &str,
        sha256: &str,
        budget: Option<&str>,
        rpm: Option<&str>,
        source: &'static str,
    ) -> Result<Self, GatewayError> {
        let problem = |problem: String| GatewayError::Invalid {
            variable: source,
            problem,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(problem(format!(
                "a client key's name is letters, digits, '-', '_' or '.', got {name:?}"
            )));
        }
        let digest = decode_sha256(sha256).ok_or_else(|| {
            problem(format!(
                "client key {name:?}: sha256 must be 64 hex digits (ballast-gateway hash-key prints it)"
            ))
        })?;
        let rpm = match rpm.map(str::trim).filter(|text| !text.is_empty()) {
            None => None,
            Some(text) => match text.parse::<f64>() {
                Ok(rpm) if rpm.is_finite() && rpm > 0.0 && rpm <= 1_000_000.0 => Some(rpm),
                _ => {
                    return Err(problem(format!(
                        "client key {name:?}: expected calls a minute (above 0, at most 1000000), got {text:?}"
                    )));
                }
            },
        };
        let daily_budget = match budget.map(str::trim).filter(|text| !text.is_empty()) {
            None => None,
            Some(text) => match text.trim().parse::<ballast::cost::Usd>() {
                Ok(usd) if usd.picos() > 0 => Some(usd),
                _ => {
                    return Err(problem(format!(
                        "client key {name:?}: expected a daily budget in dollars above 0, got {text:?}"
                    )));
                }
            },
        };
        Ok(Self {
            name: name.to_owned(),
            sha256: digest,
            daily_budget,
            rpm,
        })
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The client keys `settings` holds: the file's `[[client_keys]]` tables (`name`,
/// `sha256`, optional `daily_budget_usd` and `rpm`), then `BALLAST_CLIENT_KEYS`
/// (`name:sha256[:budget[:rpm]],...`, the budget left empty for none).
fn client_keys(settings: &Settings) -> Result<Vec<ClientKey>, GatewayError> {
    let mut keys = Vec::new();
    for entry in &settings.client_keys {
        let text = |field: &str| -> Result<Option<String>, GatewayError> {
            match entry.get(field) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(toml::Value::Integer(n)) => Ok(Some(n.to_string())),
                Some(toml::Value::Float(x)) => Ok(Some(x.to_string())),
                Some(_) => Err(GatewayError::Invalid {
                    variable: "client_keys",
                    problem: format!("{field}: expected a string or a number"),
                }),
            }
        };
        for field in entry.keys() {
            if !matches!(
                field.as_str(),
                "name" | "sha256" | "daily_budget_usd" | "rpm"
            ) {
                return Err(GatewayError::Invalid {
                    variable: "client_keys",
                    problem: format!(
                        "unknown field {field:?}; expected name, sha256, daily_budget_usd, rpm (the key itself is never kept: only its sha256)"
                    ),
                });
            }
        }
        let name = text("name")?.unwrap_or_default();
        let sha256 = text("sha256")?.unwrap_or_default();
        let budget = text("daily_budget_usd")?;
        let rpm = text("rpm")?;
        keys.push(ClientKey::parse(
            &name,
            &sha256,
            budget.as_deref(),
            rpm.as_deref(),
            "client_keys",
        )?);
    }
    if let Some(list) = settings.text("BALLAST_CLIENT_KEYS")? {
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let mut parts = entry.split(':');
            let name = parts.next().unwrap_or_default();
            let sha256 = parts.next().unwrap_or_default();
            let budget = parts.next();
            let rpm = parts.next();
            keys.push(ClientKey::parse(
                name,
                sha256,
                budget,
                rpm,
                "BALLAST_CLIENT_KEYS",
            )?);
        }
    }
    for (i, key) in keys.iter().enumerate() {
        if keys[..i]
            .iter()
            .any(|k| k.name == key.name || k.sha256 == key.sha256)
        {
            return Err(GatewayError::Invalid {
                variable: "client_keys",
                problem: format!(
                    "client key {:?} is given twice (by name or by key)",
                    key.name
                ),
            });
        }
    }
    Ok(keys)
}

impl GatewayConfig {
    /// The settings `settings` holds, checked; the defaults for the rest.
    ///
    /// ```
    /// use ballast_gateway::{GatewayConfig, Settings, ThrottleSetting};
    ///
    /// let settings = Settings::from_toml("provider = \"openai\"\nthrottle = \"off\"", |_| None).unwrap();
    /// let config = GatewayConfig::from_settings(&settings).unwrap();
    /// assert_eq!(config.provider.preset.name(), "openai");
    /// assert_eq!(config.throttle, ThrottleSetting::Off);
    ///
    /// let settings = Settings::from_toml("body_timeout = 0", |_| None).unwrap();
    /// let error = GatewayConfig::from_settings(&settings).unwrap_err();
    /// assert_eq!(error.to_string(), "BALLAST_BODY_TIMEOUT: expected whole seconds from 1 to 3600, got \"0\"");
    /// ```
    pub fn from_settings(settings: &Settings) -> Result<Self, GatewayError> {
        let preset = match settings.text("BALLAST_PROVIDER")?.as_deref().map(str::trim) {
            None | Some("" | "xai") => Preset::XAi,
            Some("openai") => Preset::OpenAi,
            Some("anthropic") => Preset::Anthropic,
            Some("gemini") => Preset::Gemini,
            Some("openai_compatible") => Preset::OpenAiCompatible,
            Some(other) => {
                return Err(invalid(
                    "BALLAST_PROVIDER",
                    "xai, openai, anthropic, gemini or openai_compatible",
                    other,
                ));
            }
        };
        let provider = Config::from_os_vars(preset, |name| settings.get_os(name))?;
        let fallbacks = Config::fallbacks_from_vars(|name| settings.get(name))?;
        let throttle = match settings.text("BALLAST_THROTTLE")?.as_deref().map(str::trim) {
            None | Some("" | "auto") => ThrottleSetting::Auto,
            Some("off") => ThrottleSetting::Off,
            Some(rpm) => match rpm.parse::<f64>() {
                Ok(rpm) if rpm.is_finite() && rpm > 0.0 && rpm <= 1_000_000.0 => {
                    ThrottleSetting::PerMinute(rpm)
                }
                _ => {
                    return Err(invalid(
                        "BALLAST_THROTTLE",
                        "auto, off or requests per minute (above 0, at most 1000000)",
                        rpm,
                    ));
                }
            },
        };
        let admin_token = match settings.text("BALLAST_ADMIN_TOKEN")? {
            None => None,
            Some(token) => {
                let problem = if token.trim() != token {
                    Some("the token has leading or trailing whitespace")
                } else if token.chars().count() < 16 {
                    Some("the token is shorter than 16 characters")
                } else {
                    None
                };
                if let Some(problem) = problem {
                    // Never the token itself.
                    return Err(GatewayError::Invalid {
                        variable: "BALLAST_ADMIN_TOKEN",
                        problem: problem.to_owned(),
                    });
                }
                Some(AdminToken(token.into_boxed_str()))
            }
        };
        let seconds = |variable: &'static str, default: u64| -> Result<Duration, GatewayError> {
            let Some(text) = settings.text(variable)? else {
                return Ok(Duration::from_secs(default));
            };
            match text.trim().parse::<u64>() {
                Ok(secs @ 1..=3600) => Ok(Duration::from_secs(secs)),
                _ => Err(invalid(variable, "whole seconds from 1 to 3600", &text)),
            }
        };
        let max_connections = match settings.text("BALLAST_MAX_CONNECTIONS")? {
            None => 1024,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n @ 1..=1_000_000) => n,
                _ => return Err(invalid("BALLAST_MAX_CONNECTIONS", "1 to 1000000", &text)),
            },
        };
        let cache_ttl = match settings.text("BALLAST_CACHE_TTL")? {
            None => None,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(secs @ 1..=86_400) => Some(Duration::from_secs(secs)),
                _ => {
                    return Err(invalid(
                        "BALLAST_CACHE_TTL",
                        "whole seconds from 0 (no cache) to 86400",
                        &text,
                    ));
                }
            },
        };
        let cache_bytes = match settings.text("BALLAST_CACHE_MB")? {
            None => 64 << 20,
            Some(text) => match text.trim().parse::<u64>() {
                Ok(mb @ 1..=65_536) => mb << 20,
                _ => return Err(invalid("BALLAST_CACHE_MB", "1 to 65536", &text)),
            },
        };
        let log_format = match settings
            .text("BALLAST_LOG_FORMAT")?
            .as_deref()
            .map(str::trim)
        {
            None | Some("" | "auto") => LogFormat::Auto,
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => return Err(invalid("BALLAST_LOG_FORMAT", "auto, json or text", other)),
        };
        Ok(Self {
            listen: settings
                .text("BALLAST_LISTEN")?
                .map_or_else(|| "127.0.0.1:8080".to_owned(), |s| s.trim().to_owned()),
            provider,
            fallbacks,
            throttle,
            admin_token,
            body_timeout: seconds("BALLAST_BODY_TIMEOUT", 30)?,
            header_timeout: seconds("BALLAST_HEADER_TIMEOUT", 10)?,
            max_connections,
            log_format,
            hedge: match settings.text("BALLAST_HEDGE")?.as_deref().map(str::trim) {
                None | Some("" | "on") => true,
                Some("off") => false,
                Some(other) => return Err(invalid("BALLAST_HEDGE", "on or off", other)),
            },
            cache_ttl,
            cache_bytes,
            client_keys: client_keys(settings)?,
            routes: named_routes(settings)?,
        })
    }

    /// The first address [`listen`](Self::listen) resolves to.
    pub async fn listen_address(&self) -> Result<std::net::SocketAddr, GatewayError> {
        let problem = || GatewayError::Invalid {
            variable: "BALLAST_LISTEN",
            problem: format!(
                "expected host:port such as 127.0.0.1:8080 or localhost:8080, got {:?}",
                self.listen
            ),
        };
        tokio::net::lookup_host(self.listen.as_str())
            .await
            .map_err(|_| problem())?
            .next()
            .ok_or_else(problem)
    }
}

fn invalid(variable: &'static str, expected: &str, value: &str) -> GatewayError {
    GatewayError::Invalid {
        variable,
        problem: format!("expected {expected}, got {value:?}"),
    }
}
