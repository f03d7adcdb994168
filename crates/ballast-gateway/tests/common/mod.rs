//! What the gateway's test binaries share: settings from a list of variables, and the
//! simulated provider they call.

use std::ffi::OsString;

use ballast_gateway::Settings;
use ballast_sim::{ExpectedKey, Scenario, Simulator};

/// Settings from `vars` alone (no process environment, no file).
pub(crate) fn settings(vars: &[(&str, &str)]) -> Settings {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_toml("", move |name| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| OsString::from(v))
    })
    .unwrap()
}

/// A healthy simulated provider that wants `expected_key`, its clock 600 times faster.
pub(crate) fn simulator(expected_key: &str) -> Simulator {
    Simulator::new(scenario(expected_key))
}

/// [`simulator`]'s scenario, to change before it starts.
pub(crate) fn scenario(expected_key: &str) -> Scenario {
    Scenario {
        api_key: Some(ExpectedKey(expected_key.into())),
        time_scale: 600.0,
        ..Scenario::healthy()
    }
}
