//! Usage from arbitrary response bodies: never a panic; what it reads adds up without
//! overflow and costs a finite amount under the built-in prices. And the same bytes as a
//! `usage` object: read through the classifier's span (its counts, when it noted them) it is
//! what a walk of the body reads.
#![no_main]

use ballast_classify::{ClassifiedBody, ClassifyResponse, Provider, ResponseView};
use ballast_cost::{PriceTable, Usage};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(usage) = Usage::from_body(data) {
        let _ = usage.prompt_tokens();
        let prices = PriceTable::builtin();
        for model in [Some("grok-code-fast-1"), Some("gpt-5-mini"), None] {
            let _ = prices.cost(model, &usage);
        }
    }
    let body = [br#"{"usage":"#.as_slice(), data, b"}"].concat();
    let walked = Usage::from_body(&body);
    let headers = HeaderMap::new();
    let view = ResponseView::new(StatusCode::OK, &headers, Some(&body));
    let span = Provider::OpenAi.classify(&view).usage;
    if span.is_some() {
        let classified = ClassifiedBody::<()>::buffered(Bytes::from(body)).with_usage_span(span);
        assert_eq!(Usage::of_body(&classified), walked);
    }
});
