//! Tool use as each API takes it: the checks a real API makes on a conversation with tool
//! calls (so that a translation that gets them wrong fails here, not in production), and
//! which tool a simulated answer calls.
//!
//! The simulator answers a request that offers tools, and whose last turn is not a tool's
//! result, with a call to the first tool (or the one `tool_choice` names), its input
//! [`TOOL_INPUT`]; streamed, the call's arguments come in three pieces (chat's tool-call
//! deltas, Anthropic's `input_json_delta`s; Gemini sends a call whole, signed with a
//! thought signature of the form [`THOUGHT_SIGNATURE`]`{id}`).

use serde_json::Value;

use crate::Flavor;

/// The input every simulated tool call gives its tool.
pub const TOOL_INPUT: &str = r#"{"arg":"sim"}"#;

/// How the thought signatures of the simulator's Gemini calls begin (the call's number
/// follows). Gemini 3 refuses a signature it did not make; the simulator takes its own and
/// the one Gemini's documentation gives for history from another model.
pub const THOUGHT_SIGNATURE: &str = "sim-signature-";

/// Gemini's refusal of a step whose calls the next content does not answer, as many.
const UNANSWERED_CALLS: &str = "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.";

/// The thought signature Gemini's documentation gives for a conversation taken from
/// another model: it skips the check.
const SKIP_SIGNATURE_CHECK: &str = "skip_thought_signature_validator";

/// Checks the tools and tool turns of a request in `flavor`'s API, as that API does; the
/// tool the answer calls (`None`: a text answer).
pub(crate) fn check(flavor: Flavor, json: &Value) -> Result<Option<String>, &'static str> {
    match flavor {
        Flavor::Anthropic => anthropic(json),
        Flavor::OpenAi | Flavor::XAi => chat(json),
        Flavor::Gemini => gemini(json),
    }
}

fn array<'a>(json: &'a Value, field: &str) -> &'a [Value] {
    json.get(field)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn str_at<'a>(json: &'a Value, pointer: &str) -> Option<&'a str> {
    json.pointer(pointer).and_then(Value::as_str)
}

/// Anthropic's Messages: each tool a `name` and an `input_schema`; every `tool_use` block
/// answered by a `tool_result` in the next (user) message, and every `tool_result`
/// answering a `tool_use` of the message before.
fn anthropic(json: &Value) -> Result<Option<String>, &'static str> {
    let tools = array(json, "tools");
    for tool in tools {
        if tool.get("name").and_then(Value::as_str).is_none() {
            return Err("tools.0.name: Field required");
        }
        if !tool.get("input_schema").is_some_and(Value::is_object) {
            return Err("tools.0.input_schema: Field required");
        }
    }
    let blocks = |message: &Value, kind: &str, id: &str| -> Vec<String> {
        array(message, "content")
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some(kind))
            .filter_map(|b| b.get(id).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let messages = array(json, "messages");
    for (i, message) in messages.iter().enumerate() {
        let uses = blocks(message, "tool_use", "id");
        if !uses.is_empty() {
            let answered = messages
                .get(i + 1)
                .map(|next| blocks(next, "tool_result", "tool_use_id"))
                .unwrap_or_default();
            if uses.iter().any(|id| !answered.contains(id)) {
                return Err(
                    "messages: `tool_use` ids were found without `tool_result` blocks immediately after",
                );
            }
        }
        let results = blocks(message, "tool_result", "tool_use_id");
        if !results.is_empty() {
            let asked = i
                .checked_sub(1)
                .map(|before| blocks(&messages[before], "tool_use", "id"))
                .unwrap_or_default();
            if results.iter().any(|id| !asked.contains(id)) {
                return Err(
                    "messages: unexpected `tool_use_id` found in `tool_result` blocks; each must have a corresponding `tool_use` block in the previous message",
                );
            }
        }
    }
    let choice = json.get("tool_choice");
    let last_is_result = messages
        .last()
        .is_some_and(|m| !blocks(m, "tool_result", "tool_use_id").is_empty());
    if tools.is_empty() || last_is_result || choice.and_then(|c| str_at(c, "/type")) == Some("none")
    {
        return Ok(None);
    }
    let named = choice
        .filter(|c| str_at(c, "/type") == Some("tool"))
        .and_then(|c| str_at(c, "/name"));
    Ok(named
        .or_else(|| str_at(&tools[0], "/name"))
        .map(str::to_owned))
}

/// OpenAI's chat: each tool a function with a name; an assistant message's `tool_calls`
/// answered, each, by the `tool` messages right after it, and a `tool` message only there.
fn chat(json: &Value) -> Result<Option<String>, &'static str> {
    let tools = array(json, "tools");
    for tool in tools {
        if str_at(tool, "/function/name").is_none() {
            return Err("Missing required parameter: 'tools[0].function.name'.");
        }
    }
    let messages = array(json, "messages");
    let mut asked: Vec<&str> = Vec::new();
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "tool" {
            let id = message
                .get("tool_call_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(at) = asked.iter().position(|asked| *asked == id) else {
                return Err(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                );
            };
            asked.remove(at);
            continue;
        }
        if !asked.is_empty() {
            return Err(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'.",
            );
        }
        if role == "assistant" {
            asked = array(message, "tool_calls")
                .iter()
                .filter_map(|call| call.get("id").and_then(Value::as_str))
                .collect();
        }
    }
    if !asked.is_empty() {
        return Err(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'.",
        );
    }
    let choice = json.get("tool_choice");
    let last_is_result = messages
        .last()
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str)
        == Some("tool");
    if tools.is_empty() || last_is_result || choice.and_then(Value::as_str) == Some("none") {
        return Ok(None);
    }
    let named = choice.and_then(|c| str_at(c, "/function/name"));
    Ok(named
        .or_else(|| str_at(&tools[0], "/function/name"))
        .map(str::to_owned))
}

/// Gemini's `generateContent`: each function declaration a name and at most one schema; a
/// model content's `functionCall` parts answered, as many, by the `functionResponse` parts
/// of the next content; in the current turn (after the last user text), each step's first
/// call signed with a signature Gemini made.
fn gemini(json: &Value) -> Result<Option<String>, &'static str> {
    let declarations: Vec<&Value> = array(json, "tools")
        .iter()
        .flat_map(|tool| array(tool, "functionDeclarations"))
        .collect();
    for declaration in &declarations {
        if declaration.get("name").and_then(Value::as_str).is_none() {
            return Err(
                "* GenerateContentRequest.tools[0].function_declarations[0].name: Name is required.",
            );
        }
        if declaration.get("parameters").is_some()
            && declaration.get("parametersJsonSchema").is_some()
        {
            return Err(
                "* GenerateContentRequest.tools[0].function_declarations[0]: parameters and parameters_json_schema cannot both be set.",
            );
        }
    }
    let contents = array(json, "contents");
    let parts_with = |content: &Value, kind: &str| -> usize {
        array(content, "parts")
            .iter()
            .filter(|part| part.get(kind).is_some())
            .count()
    };
    let current_turn = contents
        .iter()
        .rposition(|c| {
            c.get("role").and_then(Value::as_str) == Some("user")
                && array(c, "parts").iter().any(|p| p.get("text").is_some())
        })
        .unwrap_or(0);
    for (i, content) in contents.iter().enumerate() {
        let calls = parts_with(content, "functionCall");
        let responses = parts_with(content, "functionResponse");
        if calls > 0 {
            let answered = contents
                .get(i + 1)
                .map_or(0, |next| parts_with(next, "functionResponse"));
            if answered != calls && i + 1 < contents.len() {
                return Err(UNANSWERED_CALLS);
            }
            if i > current_turn {
                let first = array(content, "parts")
                    .iter()
                    .find(|part| part.get("functionCall").is_some());
                match first
                    .and_then(|p| p.get("thoughtSignature"))
                    .and_then(Value::as_str)
                {
                    None | Some("") => {
                        return Err(
                            "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance.",
                        );
                    }
                    Some(signature)
                        if !signature.starts_with(THOUGHT_SIGNATURE)
                            && signature != SKIP_SIGNATURE_CHECK =>
                    {
                        return Err("Corrupted thought signature.");
                    }
                    Some(_) => {}
                }
            }
        }
        if responses > 0 {
            let asked = i
                .checked_sub(1)
                .map_or(0, |before| parts_with(&contents[before], "functionCall"));
            if asked != responses {
                return Err(UNANSWERED_CALLS);
            }
        }
    }
    let calling = json.pointer("/toolConfig/functionCallingConfig");
    let last_is_response = contents
        .last()
        .is_some_and(|c| parts_with(c, "functionResponse") > 0);
    if declarations.is_empty()
        || last_is_response
        || calling.and_then(|c| str_at(c, "/mode")) == Some("NONE")
    {
        return Ok(None);
    }
    let named = calling.and_then(|c| str_at(c, "/allowedFunctionNames/0"));
    Ok(named
        .or_else(|| str_at(declarations[0], "/name"))
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anthropic_wants_each_tool_use_answered_right_after() {
        let tools = json!([{"name": "look", "input_schema": {"type": "object"}}]);
        let asked = json!({"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "t1", "name": "look", "input": {}},
        ]});
        let answered = json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "found"},
        ]});
        let user = json!({"role": "user", "content": "hi"});
        let request = |messages: Value| json!({"tools": tools, "messages": messages});
        assert_eq!(
            check(Flavor::Anthropic, &request(json!([user]))),
            Ok(Some("look".into()))
        );
        assert_eq!(
            check(Flavor::Anthropic, &request(json!([user, asked, answered]))),
            Ok(None),
            "a tool's result is answered in text"
        );
        assert!(check(Flavor::Anthropic, &request(json!([user, asked, user]))).is_err());
        assert!(check(Flavor::Anthropic, &request(json!([user, answered]))).is_err());
        let mut none = request(json!([user]));
        none["tool_choice"] = json!({"type": "none"});
        assert_eq!(check(Flavor::Anthropic, &none), Ok(None));
        let bad = json!({"tools": [{"name": "look", "parameters": {}}], "messages": [user]});
        assert_eq!(
            check(Flavor::Anthropic, &bad),
            Err("tools.0.input_schema: Field required")
        );
    }

    #[test]
    fn chat_wants_each_tool_call_answered_by_the_tool_messages_after_it() {
        let tools = json!([
            {"type": "function", "function": {"name": "look", "parameters": {}}},
            {"type": "function", "function": {"name": "jump", "parameters": {}}},
        ]);
        let user = json!({"role": "user", "content": "hi"});
        let asked = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "jump", "arguments": "{}"}},
        ]});
        let result = |id: &str| json!({"role": "tool", "tool_call_id": id, "content": "ok"});
        let request = |messages: Value| json!({"tools": tools, "messages": messages});
        assert_eq!(
            check(
                Flavor::OpenAi,
                &request(json!([user, asked, result("c2"), result("c1")]))
            ),
            Ok(None)
        );
        assert!(
            check(
                Flavor::XAi,
                &request(json!([user, asked, result("c1"), user]))
            )
            .is_err()
        );
        assert!(check(Flavor::XAi, &request(json!([user, result("c1")]))).is_err());
        let mut named = request(json!([user]));
        named["tool_choice"] = json!({"type": "function", "function": {"name": "jump"}});
        assert_eq!(check(Flavor::XAi, &named), Ok(Some("jump".into())));
    }

    /// Gemini wants each step's calls answered, as many, by the next content, and the
    /// current turn's steps signed by Gemini (or marked as taken from another model); an
    /// earlier turn's steps are not checked.
    #[test]
    fn gemini_wants_calls_answered_and_the_current_turn_signed() {
        let tools = json!([{"functionDeclarations": [{"name": "look"}, {"name": "jump"}]}]);
        let user = json!({"role": "user", "parts": [{"text": "hi"}]});
        let call = |signature: Option<&str>| {
            let mut part = json!({"functionCall": {"name": "look", "args": {}}});
            if let Some(signature) = signature {
                part["thoughtSignature"] = json!(signature);
            }
            json!({"role": "model", "parts": [part]})
        };
        let answer = json!({"role": "user", "parts": [
            {"functionResponse": {"name": "look", "response": {"output": "x"}}},
        ]});
        let request = |contents: Value| json!({"tools": tools, "contents": contents});
        let signed = call(Some("sim-signature-7"));
        assert_eq!(
            check(Flavor::Gemini, &request(json!([user]))),
            Ok(Some("look".into()))
        );
        assert_eq!(
            check(Flavor::Gemini, &request(json!([user, signed, answer]))),
            Ok(None),
            "after a result the answer is text"
        );
        let skipped = call(Some(SKIP_SIGNATURE_CHECK));
        assert_eq!(
            check(Flavor::Gemini, &request(json!([user, skipped, answer]))),
            Ok(None)
        );
        let unsigned = call(None);
        assert!(
            check(Flavor::Gemini, &request(json!([user, unsigned, answer])))
                .unwrap_err()
                .starts_with("Function call is missing a thought_signature")
        );
        assert_eq!(
            check(
                Flavor::Gemini,
                &request(json!([user, call(Some("forged")), answer]))
            ),
            Err("Corrupted thought signature.")
        );
        assert_eq!(
            check(
                Flavor::Gemini,
                &request(json!([user, unsigned, answer, user]))
            ),
            Ok(Some("look".into())),
            "an earlier turn is not checked"
        );
        assert!(check(Flavor::Gemini, &request(json!([user, signed, user]))).is_err());
        let two = json!({"role": "user", "parts": [answer["parts"][0], answer["parts"][0]]});
        assert!(check(Flavor::Gemini, &request(json!([user, signed, two]))).is_err());
        let named = json!({"tools": tools, "contents": [user],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["jump"]}}});
        assert_eq!(check(Flavor::Gemini, &named), Ok(Some("jump".into())));
        let none = json!({"tools": tools, "contents": [user],
            "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}});
        assert_eq!(check(Flavor::Gemini, &none), Ok(None));
    }
}
