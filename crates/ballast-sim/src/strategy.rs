//! Proptest strategies for scenarios (feature `proptest`), so every layer's property tests
//! draw from the same kinds of flaky providers.

use std::time::Duration;

use proptest::prelude::*;

use crate::{BurstModel, Flavor, Hangs, HintStyle, LimitStep, Scenario, StreamFaults};

/// Any of the four dialects.
pub fn flavor() -> impl Strategy<Value = Flavor> {
    prop_oneof![
        Just(Flavor::XAi),
        Just(Flavor::OpenAi),
        Just(Flavor::Anthropic),
        Just(Flavor::Gemini)
    ]
}

/// Any hint style, including lying ones.
pub fn hint_style() -> impl Strategy<Value = HintStyle> {
    prop_oneof![
        Just(HintStyle::None),
        Just(HintStyle::Truthful),
        Just(HintStyle::Scaled(0.1)),
        Just(HintStyle::Scaled(10.0)),
        Just(HintStyle::Random {
            max: Duration::from_secs(30)
        }),
    ]
}

/// A flaky provider: any dialect, maybe a hidden limit (30 to 600 rpm, rejections counted
/// or not), any hint style, 5xx bursts up to 60% in the bad state, hangs (for ever or for
/// 150 s) up to 20%, broken bodies and errors in 200s up to 15% each, maybe a quota of
/// $0.0001 to $0.005, and half the time a reasoning model (up to 90% of its output). No
/// key check: set [`Scenario::api_key`] where a test needs one.
pub fn flaky_scenario() -> impl Strategy<Value = Scenario> {
    (
        (
            any::<u64>(),
            flavor(),
            prop::option::of(30u32..600),
            any::<bool>(),
        ),
        (hint_style(), 0.0..0.6f64, 0.0..0.2f64, any::<bool>()),
        (
            0.0..0.15f64,
            0.0..0.15f64,
            prop::option::of(1_000_000u64..50_000_000),
            prop_oneof![Just(0.0), 0.0..0.9f64],
        ),
    )
        .prop_map(
            |(
                (seed, flavor, rpm, rejections_count),
                (wait_hint, fail, hang, hang_forever),
                (malformed, error_in_ok, quota, reasoning_share),
            )| Scenario {
                name: "flaky".into(),
                seed,
                flavor,
                hidden_limit: rpm
                    .map(|rpm| vec![LimitStep::new(Duration::ZERO, rpm)])
                    .unwrap_or_default(),
                rejections_count,
                wait_hint,
                server_errors: BurstModel {
                    enter_bad: 0.1,
                    leave_bad: 0.3,
                    fail_when_good: fail / 5.0,
                    fail_when_bad: fail,
                    step: None,
                },
                hangs: Hangs {
                    probability: hang,
                    answer_after: (!hang_forever).then_some(Duration::from_secs(150)),
                },
                malformed_probability: malformed,
                error_in_ok_probability: error_in_ok,
                quota_ticks: quota,
                reasoning_share,
                ..Scenario::healthy()
            },
        )
}

/// A flaky stream: each fault up to 30% of streams (cuts, stalls of up to 40 s, error
/// events, a broken event, no `[DONE]`, a first content up to 30 s late).
pub fn stream_faults() -> impl Strategy<Value = StreamFaults> {
    (
        (0.0..0.3f64, 0.0..0.3f64, 0u64..40_000, 0.0..0.3f64),
        (0.0..0.3f64, 0.0..0.3f64, 0.0..0.3f64, 0u64..30_000),
    )
        .prop_map(
            |(
                (cut, stall, stall_ms, error_event),
                (malformed_event, no_done, slow_first_share, slow_ms),
            )| StreamFaults {
                cut,
                stall,
                stall_for: Duration::from_millis(stall_ms),
                error_event,
                malformed_event,
                no_done,
                slow_first_share,
                slow_first: Duration::from_millis(slow_ms),
            },
        )
}
