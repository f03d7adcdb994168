//! Embeddings, as the simulated providers serve them: OpenAI's Embeddings API (OpenAI and
//! xAI), and Gemini's `:embedContent` and `:batchEmbedContents`.
//!
//! A request is checked as each API checks it (neither takes a field it does not know, so a
//! cap or a `stream_options` that a middleware writes in is refused); the answer is one
//! vector per input, billed as input tokens only. OpenAI's answer reports its usage;
//! Gemini's does not.

use base64::Engine;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

/// The fields OpenAI's embeddings request takes; any other is refused.
const FIELDS: [&str; 5] = ["model", "input", "dimensions", "encoding_format", "user"];

/// The most inputs one request may carry.
const MOST_INPUTS: usize = 2048;

/// The length of a vector when the request names none (`text-embedding-3-small`'s).
const DEFAULT_DIMENSIONS: usize = 1536;

/// The length of a Gemini vector when the request names none (`gemini-embedding-001`'s).
const DEFAULT_GEMINI_DIMENSIONS: usize = 3072;

/// What an embeddings request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Embed {
    /// How many inputs: one vector each.
    pub(crate) inputs: usize,
    /// The length of each vector.
    pub(crate) dimensions: usize,
    /// `encoding_format: "base64"`: each vector as the base64 of its little-endian `f32`s.
    pub(crate) base64: bool,
    /// The API that asked.
    pub(crate) wire: Wire,
}

/// Which embeddings API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// OpenAI's `/embeddings`.
    OpenAi,
    /// Gemini's `:embedContent`: one content, one `embedding`.
    GeminiOne,
    /// Gemini's `:batchEmbedContents`: `requests`, `embeddings`.
    GeminiBatch,
}

/// The fields Gemini's `:embedContent` takes (protobuf JSON: both spellings).
const GEMINI_FIELDS: [&str; 8] = [
    "model",
    "content",
    "taskType",
    "task_type",
    "title",
    "outputDimensionality",
    "output_dimensionality",
    "embedding_config",
];

/// Checks a Gemini embeddings request (`path` ends in `:embedContent` or
/// `:batchEmbedContents`) as Gemini's API does.
pub(crate) fn check_gemini(
    path: &str,
    json: &serde_json::Map<String, Value>,
) -> Result<Embed, &'static str> {
    let one = |request: &serde_json::Map<String, Value>| -> Result<usize, &'static str> {
        if request.keys().any(|k| !GEMINI_FIELDS.contains(&k.as_str())) {
            return Err("Invalid JSON payload received. Unknown name: Cannot find field.");
        }
        request
            .get("content")
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .filter(|parts| !parts.is_empty())
            .ok_or("* EmbedContentRequest.content: content is not specified")?;
        let dimensions = request
            .get("outputDimensionality")
            .or_else(|| request.get("output_dimensionality"));
        match dimensions.map(Value::as_u64) {
            None => Ok(DEFAULT_GEMINI_DIMENSIONS),
            Some(Some(n @ 1..=3072)) => Ok(n as usize),
            Some(_) => Err("* EmbedContentRequest.output_dimensionality: must be from 1 to 3072"),
        }
    };
    if path.ends_with(":batchEmbedContents") {
        if json.keys().any(|k| k != "requests") {
            return Err("Invalid JSON payload received. Unknown name: Cannot find field.");
        }
        let requests = json
            .get("requests")
            .and_then(Value::as_array)
            .filter(|r| !r.is_empty() && r.len() <= 100)
            .ok_or("* BatchEmbedContentsRequest.requests: between 1 and 100 requests")?;
        let mut dimensions = DEFAULT_GEMINI_DIMENSIONS;
        for request in requests {
            dimensions = one(request.as_object().ok_or("requests[]: must be an object")?)?;
        }
        return Ok(Embed {
            inputs: requests.len(),
            dimensions,
            base64: false,
            wire: Wire::GeminiBatch,
        });
    }
    Ok(Embed {
        inputs: 1,
        dimensions: one(json)?,
        base64: false,
        wire: Wire::GeminiOne,
    })
}

/// Checks an embeddings request's body as OpenAI's API does.
pub(crate) fn check(json: &serde_json::Map<String, Value>) -> Result<Embed, &'static str> {
    if let Some(unknown) = json.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        // OpenAI names the argument; the simulator's messages are static, so the usual
        // suspects are named and the rest told apart by the generic message.
        return Err(match unknown.as_str() {
            "max_tokens" => "Unrecognized request argument supplied: max_tokens",
            "max_completion_tokens" => {
                "Unrecognized request argument supplied: max_completion_tokens"
            }
            "stream" => "Unrecognized request argument supplied: stream",
            "stream_options" => "Unrecognized request argument supplied: stream_options",
            _ => "Unrecognized request argument supplied.",
        });
    }
    let invalid = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";
    let inputs = match json.get("input") {
        None => return Err("Missing required parameter: 'input'."),
        Some(Value::String(text)) if text.is_empty() => return Err(invalid),
        Some(Value::String(_)) => 1,
        Some(Value::Array(items)) if items.is_empty() || items.len() > MOST_INPUTS => {
            return Err(invalid);
        }
        // One input as its tokens.
        Some(Value::Array(items)) if items.iter().all(Value::is_u64) => 1,
        Some(Value::Array(items)) => {
            let one = |item: &Value| match item {
                Value::String(text) => !text.is_empty(),
                Value::Array(tokens) => !tokens.is_empty() && tokens.iter().all(Value::is_u64),
                _ => false,
            };
            if !items.iter().all(one) {
                return Err(invalid);
            }
            items.len()
        }
        Some(_) => return Err(invalid),
    };
    let dimensions = match json.get("dimensions") {
        None => DEFAULT_DIMENSIONS,
        Some(value) => match value.as_u64() {
            Some(n @ 1..=3072) => n as usize,
            _ => return Err("'$.dimensions' is invalid: it must be an integer from 1 to 3072."),
        },
    };
    let base64 = match json.get("encoding_format").map(Value::as_str) {
        None | Some(Some("float")) => false,
        Some(Some("base64")) => true,
        Some(_) => return Err("'$.encoding_format' must be 'float' or 'base64'."),
    };
    Ok(Embed {
        inputs,
        dimensions,
        base64,
        wire: Wire::OpenAi,
    })
}

/// The answer: a vector per input (values that depend on the call's id and the input's
/// place only), the model, and for OpenAI's API the usage (`prompt` tokens, no others).
pub(crate) fn body(id: u64, model: &str, embed: Embed, prompt: u64) -> Bytes {
    let vector = |index: usize| vector(id, index, embed.dimensions);
    let body = match embed.wire {
        Wire::GeminiOne => json!({"embedding": {"values": vector(0)}}),
        Wire::GeminiBatch => {
            let all: Vec<Value> = (0..embed.inputs)
                .map(|i| json!({"values": vector(i)}))
                .collect();
            json!({"embeddings": all})
        }
        Wire::OpenAi => {
            let data: Vec<Value> = (0..embed.inputs)
                .map(|index| {
                    let values = vector(index);
                    let embedding = if embed.base64 {
                        let bytes: Vec<u8> =
                            values.into_iter().flat_map(f32::to_le_bytes).collect();
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                    } else {
                        json!(values)
                    };
                    json!({"object": "embedding", "index": index, "embedding": embedding})
                })
                .collect();
            json!({
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
            })
        }
    };
    Bytes::from(body.to_string())
}

/// Input `index`'s vector of call `id`: `dimensions` values in (-0.1, 0.1), as a unit
/// vector of 1 536 dimensions has them, the same for the same call.
fn vector(id: u64, index: usize, dimensions: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(id.rotate_left(32) ^ index as u64);
    (0..dimensions)
        .map(|_| rng.random_range(-0.1f32..0.1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(body: Value) -> Result<Embed, &'static str> {
        check(body.as_object().unwrap())
    }

    #[test]
    fn requests_are_checked_as_openai_checks_them() {
        let one = checked(json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!((one.inputs, one.dimensions, one.base64), (1, 1536, false));
        let batch = checked(
            json!({"model": "m", "input": ["a", "b", "c"], "dimensions": 8,
            "encoding_format": "base64"}),
        )
        .unwrap();
        assert_eq!((batch.inputs, batch.dimensions, batch.base64), (3, 8, true));
        assert_eq!(
            checked(json!({"model": "m", "input": [1, 2, 3]}))
                .unwrap()
                .inputs,
            1
        );
        assert_eq!(
            checked(json!({"model": "m", "input": [[1, 2], [3]]}))
                .unwrap()
                .inputs,
            2
        );
        assert_eq!(
            checked(json!({"model": "m", "input": "hi", "max_tokens": 500})),
            Err("Unrecognized request argument supplied: max_tokens")
        );
        assert_eq!(
            checked(json!({"model": "m"})),
            Err("Missing required parameter: 'input'.")
        );
        for bad in [
            json!(""),
            json!([]),
            json!(["a", ""]),
            json!([[]]),
            json!(7),
        ] {
            assert!(
                checked(json!({"model": "m", "input": bad})).is_err(),
                "{bad}"
            );
        }
        let many: Vec<&str> = vec!["a"; 2049];
        assert!(checked(json!({"model": "m", "input": many})).is_err());
        assert!(checked(json!({"model": "m", "input": "a", "dimensions": 0})).is_err());
    }

    #[test]
    fn gemini_requests_are_checked_as_gemini_checks_them() {
        let content = json!({"parts": [{"text": "hi"}]});
        let one = check_gemini(
            "/v1beta/models/gemini-embedding-001:embedContent",
            json!({"content": content, "outputDimensionality": 8})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (one.inputs, one.dimensions, one.wire),
            (1, 8, Wire::GeminiOne)
        );
        let batch = check_gemini(
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            json!({"requests": [{"model": "models/gemini-embedding-001", "content": content},
                {"content": content}]})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (batch.inputs, batch.dimensions, batch.wire),
            (2, 3072, Wire::GeminiBatch)
        );
        for bad in [
            json!({"content": content, "generationConfig": {"maxOutputTokens": 500}}),
            json!({"content": {"parts": []}}),
            json!({"contents": [content]}),
        ] {
            let path = "/v1beta/models/gemini-embedding-001:embedContent";
            assert!(
                check_gemini(path, bad.as_object().unwrap()).is_err(),
                "{bad}"
            );
        }
        let answer: Value =
            serde_json::from_slice(&body(3, "m", Embed { inputs: 2, ..batch }, 9)).unwrap();
        assert_eq!(answer["embeddings"].as_array().unwrap().len(), 2);
        assert_eq!(
            answer["embeddings"][1]["values"].as_array().unwrap().len(),
            3072
        );
        assert!(answer.get("usageMetadata").is_none());
    }

    #[test]
    fn the_answer_has_a_vector_per_input_and_its_usage() {
        let embed = Embed {
            inputs: 2,
            dimensions: 4,
            base64: false,
            wire: Wire::OpenAi,
        };
        let answer: Value = serde_json::from_slice(&body(7, "m", embed, 12)).unwrap();
        assert_eq!(answer["data"].as_array().unwrap().len(), 2);
        assert_eq!(answer["data"][1]["index"], 1);
        assert_eq!(answer["data"][0]["embedding"].as_array().unwrap().len(), 4);
        assert_eq!(
            answer["usage"],
            json!({"prompt_tokens": 12, "total_tokens": 12})
        );
        let encoded: Value = serde_json::from_slice(&body(
            7,
            "m",
            Embed {
                base64: true,
                ..embed
            },
            12,
        ))
        .unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(bytes.len(), 16);
        let first = f32::from_le_bytes(bytes[..4].try_into().unwrap());
        assert_eq!(json!(first), answer["data"][0]["embedding"][0]);
    }
}
