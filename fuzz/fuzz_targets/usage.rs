//! Usage from arbitrary response bodies: never a panic; what it reads adds up without
//! overflow and costs a finite amount under the built-in prices.
#![no_main]

use ballast_cost::{PriceTable, Usage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(usage) = Usage::from_body(data) {
        let _ = usage.prompt_tokens();
        let prices = PriceTable::builtin();
        for model in [Some("grok-code-fast-1"), Some("gpt-5-mini"), None] {
            let _ = prices.cost(model, &usage);
        }
    }
});
