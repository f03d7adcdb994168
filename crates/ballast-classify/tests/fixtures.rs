//! The classifier against answers in each provider's documented shapes
//! (`tests/fixtures/providers.json`, written by hand from the pages each case names): a
//! ground truth that is not the simulator's, so a shape the simulator gets wrong cannot
//! hide a wrong class.

use std::time::{Duration, SystemTime};

use ballast_classify::{ClassifyResponse, Provider, ResponseView};

#[derive(serde::Deserialize)]
struct Fixtures {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    provider: String,
    source: String,
    status: u16,
    headers: std::collections::BTreeMap<String, String>,
    body: serde_json::Value,
    class: String,
    #[serde(default)]
    hint_ms: Option<u64>,
}

#[test]
fn every_documented_answer_is_read_as_its_class() {
    let text = include_str!("fixtures/providers.json");
    let fixtures: Fixtures = serde_json::from_str(text).unwrap();
    let mut wrong = Vec::new();
    for case in &fixtures.cases {
        let provider = match case.provider.as_str() {
            "openai" => Provider::OpenAi,
            "anthropic" => Provider::Anthropic,
            "gemini" => Provider::Gemini,
            "xai" => Provider::XAi,
            other => panic!("{}: unknown provider {other}", case.name),
        };
        assert!(
            case.source.starts_with("https://"),
            "{}: a source",
            case.name
        );
        let mut headers = http::HeaderMap::new();
        for (name, value) in &case.headers {
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let body = serde_json::to_vec(&case.body).unwrap();
        let status = http::StatusCode::from_u16(case.status).unwrap();
        let view =
            ResponseView::new(status, &headers, Some(&body)).with_now(SystemTime::UNIX_EPOCH);
        let verdict = provider.classify(&view);
        let class = verdict.outcome.class();
        let hint = verdict.outcome.wait_hint().map(|h| h.delay());
        let want_hint = case.hint_ms.map(Duration::from_millis);
        if class.as_str() != case.class || (want_hint.is_some() && hint != want_hint) {
            wrong.push(format!(
                "{}: read {} (hint {:?}), documented {} (hint {:?})",
                case.name, class, hint, case.class, want_hint
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(fixtures.cases.len() >= 28);
}
