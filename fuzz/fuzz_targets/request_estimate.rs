//! The request facts and the worst-case estimate of arbitrary request bodies, at every
//! dialect's path: never a panic; the model, stream flag and cap are what `serde_json` reads;
//! the estimate assumes the request's own cap when it names one, else the default.
#![no_main]

use ballast_classify::{HalfByteCount, RequestFacts};
use ballast_cost::{PriceTable, estimate};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let prices = PriceTable::builtin();
    let body = bytes::Bytes::copy_from_slice(data);
    for path in [
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/messages",
        "/v1beta/models/g:generateContent",
    ] {
        let facts = RequestFacts::read(path, &body, &HalfByteCount);
        let parsed = match serde_json::from_slice::<Value>(data) {
            Ok(Value::Object(object)) => Some(object),
            _ => None,
        };
        assert_eq!(facts.is_json_object(), parsed.is_some());
        if !path.contains(':') {
            let model = parsed.as_ref().and_then(|o| o.get("model")?.as_str());
            assert_eq!(facts.model(), model);
            let stream = parsed.as_ref().and_then(|o| o.get("stream")) == Some(&Value::Bool(true));
            assert_eq!(facts.is_stream(), stream);
        }
        let estimate = estimate(&prices, &facts, 500);
        match facts.output_cap() {
            Some(cap) => {
                assert!(estimate.cap_in_request);
                assert_eq!(estimate.max_output_tokens, cap);
            }
            None => assert_eq!(estimate.max_output_tokens, 500),
        }
        assert_eq!(estimate.prompt_tokens, (data.len() as u64).div_ceil(2));
    }
});
