//! [`Charge`]: what a finished attempt is charged, one rule for every layer that counts money
//! (the budget's settlement, the attempt logger's count), so they never disagree.

use ballast_classify::{BoxError, InspectBody, Outcome, StreamEnd, StreamSummary, never_sent};

use crate::Usage;

/// What a finished attempt is charged.
///
/// The provider may bill an attempt from the moment its request leaves, so an attempt is
/// charged its worst case whenever nothing proves otherwise:
///
/// - usage in the response: that usage;
/// - a stream that ended, or failed before its first content ([`Charge::of_stream`]): its
///   usage when read to its end, else its worst case;
/// - an error status from the provider (not 2xx): nothing, providers do not bill them;
/// - an error that proves the request never left ([`never_sent`]): nothing;
/// - anything else (a success without usage, an error inside a 2xx, a timeout, a reset, a
///   cut body, an unreadable answer): the worst case, the reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// This usage.
    Usage(Usage),
    /// The attempt's worst case: its prompt bound and output cap.
    Worst,
    /// Nothing.
    Nothing,
}

impl Charge {
    /// The charge of an attempt that ended with `result`; `prompt_bound` is its request's
    /// prompt estimate, for a stream that ended without usage.
    pub fn of<R: InspectBody>(
        result: &Result<http::Response<R>, BoxError>,
        prompt_bound: u64,
    ) -> Self {
        if let Some(usage) = result.as_ref().ok().and_then(Usage::of_response) {
            return Self::Usage(usage);
        }
        // Looked for only when there is no usage: an ordinary answer pays no second lookup.
        if let Some(summary) = StreamSummary::of_result(result) {
            return Self::of_stream(&summary, prompt_bound);
        }
        if let Some(status) = Outcome::from_result(result).status()
            && !status.is_success()
        {
            return Self::Nothing;
        }
        match result {
            Err(error) if never_sent(error.as_ref()) => Self::Nothing,
            _ => Self::Worst,
        }
    }
}

impl Charge {
    /// What a stream is charged at its end: read to its end, its usage (or what was seen of
    /// it, [`Usage::of_stream`], when it reported none); left before its end (cut, an
    /// error event, gone silent, dropped by its caller), its worst case, as an answer left
    /// before it came is. What was seen does not bound what the provider billed: a model
    /// that reasons without showing it (grok-4, OpenAI's o-series) bills its thinking as
    /// output, and a silent provider may be generating still. (Found by the property tests:
    /// a Gemini stream held back past the first-content timeout was charged one output
    /// token, its provider billed the five it was generating; with the simulator's
    /// reasoning models, streams left mid-way were charged under their bill.)
    pub fn of_stream(summary: &StreamSummary, prompt_bound: u64) -> Self {
        if summary.end == StreamEnd::Finished {
            Self::Usage(Usage::of_stream(summary, prompt_bound))
        } else {
            Self::Worst
        }
    }
}

#[cfg(test)]
mod tests {
    use ballast_classify::{ClassifiedError, OutcomeClass};

    use super::*;

    fn answer(status: u16, body: &str) -> Result<http::Response<String>, BoxError> {
        let mut response = http::Response::new(body.to_owned());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        let outcome = if status < 300 {
            Outcome::new(OutcomeClass::Success)
        } else {
            Outcome::from_status(response.status())
        };
        let status = response.status();
        response
            .extensions_mut()
            .insert(outcome.with_status(status));
        Ok(response)
    }

    fn failed(error: BoxError) -> Result<http::Response<String>, BoxError> {
        Err(Box::new(ClassifiedError::transport(error)))
    }

    /// The rule the budget settles by and the logger counts by, case by case.
    #[test]
    fn each_ending_is_charged_by_the_one_rule() {
        let usage = r#"{"usage":{"prompt_tokens":12,"completion_tokens":30}}"#;
        let Charge::Usage(read) = Charge::of(&answer(200, usage), 99) else {
            panic!("usage");
        };
        assert_eq!((read.prompt_tokens(), read.output_tokens), (12, 30));
        // A 2xx that says nothing of its usage may have been billed.
        assert_eq!(Charge::of(&answer(200, "{}"), 99), Charge::Worst);
        // Error statuses are not billed.
        assert_eq!(Charge::of(&answer(503, "{}"), 99), Charge::Nothing);
        assert_eq!(Charge::of(&answer(429, "{}"), 99), Charge::Nothing);
        // A timeout: the provider may still be generating.
        let timeout: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(Charge::of(&failed(timeout), 99), Charge::Worst);
        // Refused at connect: nothing left the process.
        let refused: BoxError =
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(Charge::of(&failed(refused), 99), Charge::Nothing);
    }

    /// A stream read to its end without usage is charged what was seen of it (its prompt
    /// bound, one output token when it delivered nothing); one left before its end, cut or
    /// silent, its worst case.
    #[test]
    fn a_stream_left_before_its_end_is_charged_its_worst_case() {
        let before_content = |end| -> Result<http::Response<String>, BoxError> {
            let summary = StreamSummary {
                end,
                usage: None,
                content_bytes: 0,
                largest_content: 0,
                events: 0,
                overflows: 0,
                overflow_bytes: 0,
                first_content: None,
                duration: std::time::Duration::from_secs(20),
            };
            Err(Box::new(
                ClassifiedError::new(Outcome::new(OutcomeClass::Timeout), None)
                    .with_stream(summary),
            ))
        };
        let Charge::Usage(seen) = Charge::of(&before_content(StreamEnd::Finished), 99) else {
            panic!("a whole stream is charged what was seen");
        };
        assert_eq!((seen.prompt_tokens(), seen.output_tokens), (99, 1));
        for end in [StreamEnd::Cut, StreamEnd::Stalled, StreamEnd::Dropped] {
            assert_eq!(
                Charge::of(&before_content(end), 99),
                Charge::Worst,
                "{end:?}"
            );
        }
    }
}
