//! The endpoints a client meets beside its generation calls, as the simulated OpenAI and
//! xAI serve them: the model list and moderations (free: answered at once and kept out of
//! the ledger, as the real APIs bill neither), and image generation (billed, through the
//! same weather as every billed call).
//!
//! Each request is checked as the API checks it: none of these takes a field it does not
//! know, so an output cap a middleware writes in is refused. Images bill as their models
//! do: a `gpt-image-*` model by tokens (its answer reports them, [`IMAGE_TOKENS`] output
//! tokens an image), any other (`dall-e-3`, `grok-2-image`) by the image
//! ([`PER_IMAGE_TICKS`]), with no usage in its answer: what a middleware that prices
//! tokens cannot see.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::Flavor;

/// The output tokens of one `gpt-image-1` image (1024x1024, medium quality).
pub const IMAGE_TOKENS: u64 = 1056;

/// What an image of a model billed by the image costs: $0.04 in ticks (`dall-e-3`,
/// 1024x1024, standard quality).
pub const PER_IMAGE_TICKS: u64 = crate::TICKS_PER_USD / 25;

/// The fields an image generation request takes (the simulator does not stream images).
const IMAGE_FIELDS: [&str; 11] = [
    "model",
    "prompt",
    "n",
    "size",
    "quality",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "response_format",
    "user",
];

/// The fields a moderation request takes.
const MODERATION_FIELDS: [&str; 2] = ["model", "input"];

/// OpenAI's refusal of a field it does not know, for the usual suspects (the simulator's
/// messages are static).
fn unknown_field(name: &str) -> &'static str {
    match name {
        "max_tokens" => "Unknown parameter: 'max_tokens'.",
        "max_completion_tokens" => "Unknown parameter: 'max_completion_tokens'.",
        "max_output_tokens" => "Unknown parameter: 'max_output_tokens'.",
        "stream" => "Unknown parameter: 'stream'.",
        "stream_options" => "Unknown parameter: 'stream_options'.",
        _ => "Unknown parameter.",
    }
}

/// An image generation request (`POST .../images/generations`), checked: how many images.
pub(crate) fn check_images(json: &serde_json::Map<String, Value>) -> Result<u64, &'static str> {
    if let Some(unknown) = json.keys().find(|k| !IMAGE_FIELDS.contains(&k.as_str())) {
        return Err(unknown_field(unknown));
    }
    match json.get("prompt") {
        Some(Value::String(prompt)) if !prompt.is_empty() => {}
        _ => return Err("Missing required parameter: 'prompt'."),
    }
    match json.get("n") {
        None => Ok(1),
        Some(n) => match n.as_u64() {
            Some(n @ 1..=10) => Ok(n),
            _ => Err("Invalid 'n': integer between 1 and 10 expected."),
        },
    }
}

/// Whether `model` bills its images by tokens (and says so in its answer).
pub(crate) fn billed_by_tokens(model: &str) -> bool {
    model.starts_with("gpt-image")
}

/// The answer to an image generation of `images` images, with its usage when its model
/// bills by tokens.
pub(crate) fn images_body(model: &str, images: u64, prompt: u64, output: u64) -> Bytes {
    let data: Vec<Value> = (0..images)
        .map(|i| json!({"b64_json": format!("aW1hZ2U{i}")}))
        .collect();
    let mut body = json!({"created": 1_700_000_000u64, "data": data});
    if billed_by_tokens(model) {
        body["usage"] = json!({
            "input_tokens": prompt,
            "input_tokens_details": {"text_tokens": prompt, "image_tokens": 0},
            "output_tokens": output,
            "total_tokens": prompt + output,
        });
    }
    Bytes::from(body.to_string())
}

/// A free call's answer: the model list (`GET .../models`) or a moderation (`POST
/// .../moderations`), for an OpenAI or xAI provider; `None` for anything else. `Err` is a
/// refusal: its message, for a 400.
pub(crate) fn free(
    flavor: Flavor,
    method: &http::Method,
    path: &str,
    body: &[u8],
) -> Option<Result<Bytes, &'static str>> {
    if !matches!(flavor, Flavor::OpenAi | Flavor::XAi) {
        return None;
    }
    if method == http::Method::GET && path.ends_with("/models") {
        let list = json!({
            "object": "list",
            "data": [{"id": "sim-model", "object": "model", "created": 0, "owned_by": "ballast-sim"}],
        });
        return Some(Ok(Bytes::from(list.to_string())));
    }
    if method != http::Method::POST || !path.ends_with("/moderations") {
        return None;
    }
    Some(moderation(body))
}

fn moderation(body: &[u8]) -> Result<Bytes, &'static str> {
    let json: Value =
        serde_json::from_slice(body).map_err(|_| "The request body is not valid JSON.")?;
    let object = json
        .as_object()
        .ok_or("The request body must be a JSON object.")?;
    if let Some(unknown) = object
        .keys()
        .find(|k| !MODERATION_FIELDS.contains(&k.as_str()))
    {
        return Err(unknown_field(unknown));
    }
    let inputs = match object.get("input") {
        Some(Value::String(_)) => 1,
        Some(Value::Array(items)) if !items.is_empty() => items.len(),
        _ => return Err("Missing required parameter: 'input'."),
    };
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("omni-moderation-latest");
    let results: Vec<Value> = (0..inputs)
        .map(|_| json!({"flagged": false, "categories": {}, "category_scores": {}}))
        .collect();
    let answer = json!({"id": "modr-sim", "model": model, "results": results});
    Ok(Bytes::from(answer.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(text: &str) -> serde_json::Map<String, Value> {
        serde_json::from_str(text).unwrap()
    }

    /// An image request takes only its own fields: a written cap is refused as OpenAI
    /// refuses it, and `n` is bounded.
    #[test]
    fn image_requests_are_checked_as_the_api_checks_them() {
        assert_eq!(
            check_images(&object(r#"{"model":"gpt-image-1","prompt":"a cat","n":3}"#)),
            Ok(3)
        );
        assert_eq!(
            check_images(&object(
                r#"{"model":"gpt-image-1","prompt":"a cat","max_completion_tokens":500}"#
            )),
            Err("Unknown parameter: 'max_completion_tokens'.")
        );
        assert!(check_images(&object(r#"{"model":"dall-e-3","prompt":"x","n":11}"#)).is_err());
        assert!(check_images(&object(r#"{"model":"dall-e-3"}"#)).is_err());
    }

    /// Moderations and the model list are free and answered for OpenAI and xAI only; a
    /// moderation takes no other field.
    #[test]
    fn free_calls_are_answered_and_checked() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        let list = free(Flavor::OpenAi, &get, "/v1/models", b"")
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&list).contains("sim-model"));
        assert!(free(Flavor::Anthropic, &get, "/v1/models", b"").is_none());
        let moderated = free(
            Flavor::OpenAi,
            &post,
            "/v1/moderations",
            br#"{"input":["a","b"]}"#,
        )
        .unwrap()
        .unwrap();
        let answer: Value = serde_json::from_slice(&moderated).unwrap();
        assert_eq!(answer["results"].as_array().unwrap().len(), 2);
        assert_eq!(
            free(
                Flavor::OpenAi,
                &post,
                "/v1/moderations",
                br#"{"input":"a","max_completion_tokens":500}"#,
            ),
            Some(Err("Unknown parameter: 'max_completion_tokens'."))
        );
    }
}
