//! The worst-case estimate of arbitrary request bodies: never a panic; the output cap it
//! assumes is the request's own when the request names one, else the default.
#![no_main]

use ballast_cost::{HalfByteCount, PriceTable, estimate, output_cap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let prices = PriceTable::builtin();
    let estimate = estimate(&prices, Some("grok-code-fast-1"), data, &HalfByteCount, 500);
    match output_cap(data) {
        Some(cap) => {
            assert!(estimate.cap_in_request);
            assert_eq!(estimate.max_output_tokens, cap);
        }
        None => assert_eq!(estimate.max_output_tokens, 500),
    }
    assert!(estimate.prompt_tokens >= (data.len() as u64).div_ceil(2));
});
