//! The gateway's settings from an arbitrary TOML file and arbitrary variable values (text
//! before the first NUL is the file; after it, `NAME=value` lines): never a panic, and an
//! admin token never in an error message or a `Debug` (unless another input carries its
//! text).
#![no_main]

use std::ffi::OsString;

use ballast_gateway::{GatewayConfig, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (file, env) = text.split_once('\0').unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    // The token, when no other input could put its text in a message on its own (another
    // value, as written or as `{:?}` escapes it: `"\0"` then `"174..."` reads `\0174...`).
    let token = env
        .iter()
        .find(|(name, _)| name == "BALLAST_ADMIN_TOKEN")
        .map(|(_, value)| value.clone())
        .filter(|token| {
            !file.contains(token.as_str())
                && !format!("{file:?}").contains(token.as_str())
                && env
                    .iter()
                    .filter(|(name, _)| name != "BALLAST_ADMIN_TOKEN")
                    .all(|(_, value)| {
                        !value.contains(token.as_str())
                            && !format!("{value:?}").contains(token.as_str())
                    })
        });
    let lookup = env.clone();
    let Ok(settings) = Settings::from_toml(file, move |name| {
        lookup
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| OsString::from(v))
    }) else {
        return;
    };
    match GatewayConfig::from_settings(&settings) {
        Ok(config) => {
            if let Some(token) = token.filter(|t| t.len() >= 16) {
                assert!(!format!("{config:?}").contains(&token));
            }
        }
        Err(error) => {
            if let Some(token) = token.filter(|t| t.len() >= 16) {
                assert!(!error.to_string().contains(&token));
            }
        }
    }
});
