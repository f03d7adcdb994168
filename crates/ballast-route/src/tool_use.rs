//! Tool use between OpenAI's chat and Anthropic's Messages: tool definitions, the choice
//! of tool, the calls an assistant makes and the results it is given, each way.
//!
//! | chat | Messages |
//! |---|---|
//! | `tools[].function {name, description, parameters}` | `tools[] {name, description, input_schema}` |
//! | `tool_choice`: `auto`, `required`, `none`, `{function: {name}}` | `{type: auto}`, `{type: any}`, `{type: none}`, `{type: tool, name}` |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` |
//! | assistant `tool_calls[] {id, function {name, arguments}}` (arguments a JSON string) | assistant `tool_use` blocks `{id, name, input}` (input an object) |
//! | `tool` messages `{tool_call_id, content}` | `tool_result` blocks `{tool_use_id, content}` in the next user message |
//! | a tool's or a result part's `cache_control` (LiteLLM's and Portkey's extension) | the tool's or `tool_result`'s `cache_control` |
//!
//! What has no counterpart is not translated (the target is passed over): chat's other tool
//! types (`custom`), Anthropic's server tools (web search, code execution, computer use:
//! a `type` other than `custom`), arguments that are not a JSON object, a tool result
//! that is not text.

use serde_json::{Map, Value, json};

use crate::translate::{Untranslatable, refuse};

/// Chat's tool definitions as Anthropic's.
pub(crate) fn to_anthropic_tools(tools: &[Value]) -> Result<Vec<Value>, Untranslatable> {
    tools
        .iter()
        .map(|tool| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return refuse("a tool other than a function");
            }
            let function = tool.get("function").unwrap_or(&Value::Null);
            let Some(name) = function.get("name").and_then(Value::as_str) else {
                return refuse("a function without a name");
            };
            let mut out = json!({
                "name": name,
                "input_schema": function
                    .get("parameters")
                    .filter(|p| p.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(description) = function.get("description").filter(|d| d.is_string()) {
                out["description"] = description.clone();
            }
            // A prompt-caching breakpoint on the tool, as LiteLLM's chat API takes it.
            if let Some(mark) = tool.get("cache_control").filter(|m| m.is_object()) {
                out["cache_control"] = mark.clone();
            }
            Ok(out)
        })
        .collect()
}

/// Chat's `tool_choice` (and `parallel_tool_calls`) as Anthropic's `tool_choice`.
pub(crate) fn to_anthropic_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Value>, Untranslatable> {
    let mut out = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            _ => return refuse("a tool_choice of another kind"),
        },
        Some(named) => match named.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Some(json!({"type": "tool", "name": name})),
            None => return refuse("a tool_choice of another kind"),
        },
    };
    if parallel == Some(false) {
        let choice = out.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    Ok(out)
}

/// A chat tool call as a `tool_use` block.
pub(crate) fn to_tool_use(call: &Value) -> Result<Value, Untranslatable> {
    if call.get("type").and_then(Value::as_str) != Some("function") {
        return refuse("a tool call other than a function's");
    }
    let (Some(id), Some(name)) = (
        call.get("id").and_then(Value::as_str),
        call.pointer("/function/name").and_then(Value::as_str),
    ) else {
        return refuse("a tool call without an id or a name");
    };
    let arguments = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("{}");
    let input = match serde_json::from_str::<Value>(if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    }) {
        Ok(input @ Value::Object(_)) => input,
        _ => return refuse("tool call arguments that are not a JSON object"),
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// A `tool_use` block as a chat tool call (its input written as the arguments string).
pub(crate) fn to_tool_call(block: &Value) -> Value {
    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
    json!({
        "id": block.get("id").and_then(Value::as_str).unwrap_or(""),
        "type": "function",
        "function": {
            "name": block.get("name").and_then(Value::as_str).unwrap_or(""),
            "arguments": input.to_string(),
        },
    })
}

/// Anthropic's tool definitions as chat's. Server tools (a `type` other than `custom`)
/// run on Anthropic's side and have no chat counterpart.
pub(crate) fn to_chat_tools(tools: &[Value]) -> Result<Vec<Value>, Untranslatable> {
    tools
        .iter()
        .map(|tool| {
            if tool
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|kind| kind != "custom")
            {
                return refuse("a server tool");
            }
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                return refuse("a tool without a name");
            };
            let mut function = Map::new();
            function.insert("name".into(), json!(name));
            if let Some(description) = tool.get("description").filter(|d| d.is_string()) {
                function.insert("description".into(), description.clone());
            }
            function.insert(
                "parameters".into(),
                tool.get("input_schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            );
            Ok(json!({"type": "function", "function": function}))
        })
        .collect()
}

/// Anthropic's `tool_choice` as chat's `tool_choice` and `parallel_tool_calls`.
pub(crate) fn to_chat_choice(
    choice: Option<&Value>,
) -> Result<(Option<Value>, Option<bool>), Untranslatable> {
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return Ok((None, None));
    };
    let parallel =
        (choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true))).then_some(false);
    let out = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => return refuse("a tool_choice without a name"),
        },
        _ => return refuse("a tool_choice of another kind"),
    };
    Ok((Some(out), parallel))
}

/// A `tool_result` block's text: its content as a string, or its text blocks joined.
pub(crate) fn result_text(block: &Value) -> Result<String, Untranslatable> {
    match block.get("content") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(part))) => {
                        if !text.is_empty() {
                            text.push_str("\n\n");
                        }
                        text.push_str(part);
                    }
                    _ => return refuse("a tool result other than text"),
                }
            }
            Ok(text)
        }
        Some(_) => refuse("a tool result other than text"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_and_choices_go_both_ways() {
        let chat = json!([{"type": "function", "function": {
            "name": "look", "description": "Looks.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        }}]);
        let anthropic = to_anthropic_tools(chat.as_array().unwrap()).unwrap();
        assert_eq!(
            anthropic,
            [json!({"name": "look", "description": "Looks.",
                    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}})]
        );
        assert_eq!(
            to_chat_tools(&anthropic).unwrap(),
            chat.as_array().unwrap()[..]
        );

        for (chat, anthropic) in [
            (json!("auto"), json!({"type": "auto"})),
            (json!("required"), json!({"type": "any"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "look"}}),
                json!({"type": "tool", "name": "look"}),
            ),
        ] {
            assert_eq!(
                to_anthropic_choice(Some(&chat), None).unwrap(),
                Some(anthropic.clone())
            );
            assert_eq!(
                to_chat_choice(Some(&anthropic)).unwrap(),
                (Some(chat), None)
            );
        }
        let serial = to_anthropic_choice(None, Some(false)).unwrap().unwrap();
        assert_eq!(
            serial,
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            to_chat_choice(Some(&serial)).unwrap(),
            (Some(json!("auto")), Some(false))
        );
    }

    #[test]
    fn calls_go_both_ways_with_their_arguments() {
        let call = json!({"id": "c1", "type": "function",
                          "function": {"name": "look", "arguments": "{\"q\":\"rust\"}"}});
        let block = to_tool_use(&call).unwrap();
        assert_eq!(
            block,
            json!({"type": "tool_use", "id": "c1", "name": "look", "input": {"q": "rust"}})
        );
        assert_eq!(to_tool_call(&block), call);
        let empty =
            json!({"id": "c2", "type": "function", "function": {"name": "now", "arguments": ""}});
        assert_eq!(to_tool_use(&empty).unwrap()["input"], json!({}));
        let list =
            json!({"id": "c3", "type": "function", "function": {"name": "f", "arguments": "[1]"}});
        assert!(to_tool_use(&list).is_err());
    }

    #[test]
    fn what_has_no_counterpart_is_refused() {
        let custom = json!([{"type": "custom", "custom": {"name": "grammar"}}]);
        assert!(to_anthropic_tools(custom.as_array().unwrap()).is_err());
        let server = json!([{"type": "web_search_20250305", "name": "web_search"}]);
        assert!(to_chat_tools(server.as_array().unwrap()).is_err());
        let client =
            json!([{"type": "custom", "name": "look", "input_schema": {"type": "object"}}]);
        assert!(to_chat_tools(client.as_array().unwrap()).is_ok());
        let image =
            json!({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]});
        assert!(result_text(&image).is_err());
        let texts = json!({"type": "tool_result", "tool_use_id": "t",
                           "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
        assert_eq!(result_text(&texts).unwrap(), "a\n\nb");
    }
}
