//! Classifies arbitrary responses: status from the first two bytes, then `name: value`
//! header lines up to a blank line, then the body. Must never panic, and any hint must stay
//! within `MAX_WAIT_HINT`.
#![no_main]

use ballast_classify::{ClassifyResponse, MAX_WAIT_HINT, Provider, ResponseView};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = 100 + u16::from_le_bytes([data[0], data[1]]) % 900;
    let Ok(status) = StatusCode::from_u16(status) else {
        return;
    };
    let streaming = data[2] & 1 == 1;
    let rest = &data[3..];
    let split = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(rest.len());
    let (head, body) = rest.split_at(split);
    let body = body.get(2..).unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let view = ResponseView::new(status, &headers, (!streaming).then_some(body));
    let verdict = Provider::OpenAiCompatible.classify(&view);
    if let Some(hint) = verdict.outcome.wait_hint() {
        assert!(hint.delay() <= MAX_WAIT_HINT);
    }
});
