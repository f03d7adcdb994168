//! Tool use between OpenAI's chat and Gemini's `generateContent`: function declarations,
//! the calling mode, the calls a model makes (with their thought signatures) and the
//! responses it is given.
//!
//! | chat | Gemini |
//! |---|---|
//! | `tools[].function {name, description, parameters}` | `tools[0].functionDeclarations[] {name, description, parametersJsonSchema}` |
//! | `tool_choice`: `auto`, `required`, `none`, `{function: {name}}` | `toolConfig.functionCallingConfig.mode`: `AUTO`, `ANY`, `NONE`, `ANY` with `allowedFunctionNames` |
//! | assistant `tool_calls[] {id, function {name, arguments}}` | `model` content's `functionCall {name, args}` parts |
//! | the call's `extra_content.google.thought_signature` | the part's `thoughtSignature` |
//! | `tool` messages `{tool_call_id, content}` | `functionResponse {name, response: {output}}` parts of the next `user` content |
//!
//! **Thought signatures.** Gemini 3 models sign each step of function calling and refuse
//! (400) a conversation whose current turn has a `functionCall` sent back without its
//! signature. A call Gemini made comes back to the chat caller with its signature where
//! Gemini's own OpenAI-compatible API puts it (`extra_content.google.thought_signature`),
//! and goes back with it. A step with none (made by another provider before a failover, or
//! from a client that dropped the field) is sent with the value Gemini's documentation
//! gives for history from other models, [`UNSIGNED`], so that the conversation is taken.
//!
//! Gemini has no counterpart of `parallel_tool_calls: false` (it may call several
//! functions at once; a chat caller takes a list either way): it is left out. Chat's call
//! ids have no counterpart either: a response is matched to its call by the call's name,
//! looked up by id in the conversation; calls Gemini makes get ids from the response's id.

use serde_json::{Value, json};

use crate::translate::{Untranslatable, refuse};

/// The thought signature a step that has none is sent with: the value Gemini's thought
/// signature documentation gives for a conversation taken from another model.
pub(crate) const UNSIGNED: &str = "skip_thought_signature_validator";

/// Tool definitions (in the Anthropic form [`tool_use`](crate::tool_use) reads chat's
/// into) as Gemini's `tools`: one tool of function declarations. The schema goes as JSON
/// Schema (`parametersJsonSchema`), which takes what chat's `parameters` may hold
/// (`additionalProperties`, `$defs`...), where `parameters` takes a subset.
pub(crate) fn declarations(tools: &[Value]) -> Value {
    let declarations: Vec<Value> = tools
        .iter()
        .map(|tool| {
            let mut declaration = json!({
                "name": tool["name"],
                "parametersJsonSchema": tool["input_schema"],
            });
            if let Some(description) = tool.get("description") {
                declaration["description"] = description.clone();
            }
            declaration
        })
        .collect();
    json!([{ "functionDeclarations": declarations }])
}

/// A tool choice (in the Anthropic form) as Gemini's `toolConfig`.
pub(crate) fn config(choice: &Value) -> Option<Value> {
    let calling = match choice.get("type").and_then(Value::as_str)? {
        "auto" => json!({"mode": "AUTO"}),
        "any" => json!({"mode": "ANY"}),
        "none" => json!({"mode": "NONE"}),
        "tool" => json!({"mode": "ANY", "allowedFunctionNames": [choice["name"]]}),
        _ => return None,
    };
    Some(json!({ "functionCallingConfig": calling }))
}

/// A chat tool call's thought signature (`extra_content.google.thought_signature`).
pub(crate) fn signature(call: &Value) -> Option<&str> {
    call.pointer("/extra_content/google/thought_signature")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// An assistant's calls (`tool_use` blocks, with their chat calls' signatures) as a model
/// content's `functionCall` parts after its text. The first call carries a signature: its
/// own, or [`UNSIGNED`] (Gemini signs a step on its first call; parallel calls after it
/// have none).
pub(crate) fn call_parts(text: &str, uses: &[Value], signatures: &[Option<&str>]) -> Vec<Value> {
    let mut parts = Vec::with_capacity(uses.len() + 1);
    if !text.is_empty() {
        parts.push(json!({ "text": text }));
    }
    for (i, use_) in uses.iter().enumerate() {
        let mut part = json!({"functionCall": {"name": use_["name"], "args": use_["input"]}});
        match signatures.get(i).copied().flatten() {
            Some(signature) => part["thoughtSignature"] = json!(signature),
            None if i == 0 => part["thoughtSignature"] = json!(UNSIGNED),
            None => {}
        }
        parts.push(part);
    }
    parts
}

/// A tool's result as a `functionResponse` part, for the call named `name`.
pub(crate) fn response_part(name: &str, text: &str) -> Value {
    json!({"functionResponse": {"name": name, "response": {"output": text}}})
}

/// The name of the call `id` answers: the latest `tool_use` with that id among `uses`.
pub(crate) fn name_of<'a>(
    uses: impl DoubleEndedIterator<Item = &'a Value>,
    id: &str,
) -> Result<&'a str, Untranslatable> {
    uses.rev()
        .find(|use_| use_.get("id").and_then(Value::as_str) == Some(id))
        .and_then(|use_| use_.get("name").and_then(Value::as_str))
        .map_or_else(
            || refuse("a tool result whose call is not in the conversation"),
            Ok,
        )
}

/// The chat tool calls of a Gemini candidate's `functionCall` parts, numbered from
/// `first`; ids from `response` (the answer's id) and the call's number, unless Gemini gave
/// the call one.
pub(crate) fn tool_calls(candidate: &Value, response: &str, first: usize) -> Vec<Value> {
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    parts
        .iter()
        .filter_map(|part| Some((part, part.get("functionCall")?)))
        .enumerate()
        .map(|(i, (part, call))| {
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{response}_{}", first + i), str::to_owned);
            let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
            let mut out = json!({
                "id": id,
                "type": "function",
                "function": {
                    "name": call.get("name").and_then(Value::as_str).unwrap_or(""),
                    "arguments": args.to_string(),
                },
            });
            if let Some(signature) = part.get("thoughtSignature").and_then(Value::as_str) {
                out["extra_content"] = json!({"google": {"thought_signature": signature}});
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_and_modes() {
        let tools = [json!({"name": "look", "description": "Looks.",
            "input_schema": {"type": "object", "additionalProperties": false}})];
        assert_eq!(
            declarations(&tools),
            json!([{"functionDeclarations": [{"name": "look", "description": "Looks.",
                "parametersJsonSchema": {"type": "object", "additionalProperties": false}}]}])
        );
        let mode = |choice: Value| config(&choice).unwrap()["functionCallingConfig"].clone();
        assert_eq!(mode(json!({"type": "auto"})), json!({"mode": "AUTO"}));
        assert_eq!(mode(json!({"type": "any"})), json!({"mode": "ANY"}));
        assert_eq!(mode(json!({"type": "none"})), json!({"mode": "NONE"}));
        assert_eq!(
            mode(json!({"type": "tool", "name": "look"})),
            json!({"mode": "ANY", "allowedFunctionNames": ["look"]})
        );
    }

    /// The first call of a step carries a signature: its own, else the one for history
    /// from another model; later parallel calls only their own.
    #[test]
    fn the_first_call_of_a_step_is_signed() {
        let uses = [
            json!({"type": "tool_use", "id": "a", "name": "look", "input": {"x": 1}}),
            json!({"type": "tool_use", "id": "b", "name": "jump", "input": {}}),
        ];
        assert_eq!(
            call_parts("Let me look.", &uses, &[Some("sig"), None]),
            vec![
                json!({"text": "Let me look."}),
                json!({"functionCall": {"name": "look", "args": {"x": 1}}, "thoughtSignature": "sig"}),
                json!({"functionCall": {"name": "jump", "args": {}}}),
            ]
        );
        assert_eq!(
            call_parts("", &uses, &[None, None])[0],
            json!({"functionCall": {"name": "look", "args": {"x": 1}}, "thoughtSignature": UNSIGNED})
        );
    }

    #[test]
    fn calls_come_back_with_ids_and_signatures() {
        let candidate = json!({"content": {"role": "model", "parts": [
            {"text": "Looking."},
            {"functionCall": {"name": "look", "args": {"x": 1}}, "thoughtSignature": "sig"},
            {"functionCall": {"name": "jump", "args": {}, "id": "given"}},
        ]}});
        assert_eq!(
            tool_calls(&candidate, "r1", 0),
            vec![
                json!({"id": "call_r1_0", "type": "function",
                    "function": {"name": "look", "arguments": "{\"x\":1}"},
                    "extra_content": {"google": {"thought_signature": "sig"}}}),
                json!({"id": "given", "type": "function",
                    "function": {"name": "jump", "arguments": "{}"}}),
            ]
        );
        // A call's signature, read back from the chat call.
        assert_eq!(signature(&tool_calls(&candidate, "r1", 0)[0]), Some("sig"));
    }

    #[test]
    fn a_result_is_named_by_its_call() {
        let uses = [
            json!({"id": "a", "name": "look"}),
            json!({"id": "b", "name": "jump"}),
            json!({"id": "a", "name": "later"}),
        ];
        assert_eq!(name_of(uses.iter(), "b"), Ok("jump"));
        assert_eq!(name_of(uses.iter(), "a"), Ok("later"), "the latest call");
        assert!(name_of(uses.iter(), "c").is_err());
    }
}
