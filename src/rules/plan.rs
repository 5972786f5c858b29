//! From a matched rule's action to the exact requests it makes: method, path
//! and JSON body (what `webhookd rules test` prints and the engine sends).
//! Templates render here; a failure fails this action only.

use std::collections::BTreeMap;

use bytes::Bytes;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Action, Rule, RuleSet, Template};
use crate::delivery::Delivery;
use crate::webhook::signature;

/// One request an action makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    GitHub {
        method: Method,
        path: String,
        body: Option<Value>,
        /// Safe to send twice.
        idempotent: bool,
        /// An answer with this status counts as done (a label already absent).
        ok_status: Option<u16>,
        /// On a retried delivery, look for this mark first and skip the call
        /// when it is there: the first attempt already made it.
        once: Option<Once>,
    },
    Forward {
        url: String,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
}

/// Where to look for what an earlier attempt wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Once {
    /// A list endpoint (paginated).
    pub list: String,
    /// The field of each item that carries the mark.
    pub field: &'static str,
    pub mark: String,
}

impl Call {
    pub fn describe(&self) -> String {
        match self {
            Self::GitHub { method, path, body, .. } => match body {
                Some(body) => format!("{method} {path} {body}"),
                None => format!("{method} {path}"),
            },
            Self::Forward { url, body, .. } => format!("POST {url} (the delivery, {} bytes, signed)", body.len()),
        }
    }
}

/// The template context of a delivery: its payload's top-level fields (the
/// action among them), plus `event` and `delivery` (the id).
pub fn context(delivery: &Delivery, payload: &Value) -> minijinja::Value {
    let mut map = match payload {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    map.entry("event").or_insert_with(|| json!(delivery.event().as_str()));
    map.entry("delivery").or_insert_with(|| json!(delivery.id().as_str()));
    minijinja::Value::from_serialize(&map)
}

/// The hidden mark in a comment webhookd writes: which delivery, rule and
/// action wrote it.
pub fn comment_mark(delivery: &Delivery, rule: &Rule, index: usize) -> String {
    let rule: String = rule.name.chars().map(|c| if c.is_alphanumeric() || c == '_' { c } else { '-' }).collect();
    format!("<!-- webhookd delivery={} rule={rule} action={index} -->", delivery.id())
}

/// The requests `action` (the `index`th of `rule`) makes for this delivery.
pub fn plan(
    set: &RuleSet,
    rule: &Rule,
    index: usize,
    action: &Action,
    delivery: &Delivery,
    payload: &Value,
    ctx: &minijinja::Value,
) -> Result<Vec<Call>, String> {
    let render = |t: &Template| set.render(t, ctx).map_err(|e| format!("template {:?} failed: {e}", t.shown()));
    let render_all = |list: &[Template]| list.iter().map(render).collect::<Result<Vec<_>, _>>();
    let repo =
        || payload.pointer("/repository/full_name").and_then(Value::as_str).ok_or("the delivery names no repository");
    let number = || {
        ["/issue/number", "/pull_request/number", "/number"]
            .iter()
            .find_map(|p| payload.pointer(p).and_then(Value::as_u64))
            .ok_or("the delivery names no issue or pull request")
    };
    let write = |method: Method, path: String, body: Value, idempotent: bool| Call::GitHub {
        method,
        path,
        body: Some(body),
        idempotent,
        ok_status: None,
        once: None,
    };
    Ok(match action {
        Action::Comment(body) => {
            let (repo, number) = (repo()?, number()?);
            let mark = comment_mark(delivery, rule, index);
            let list = format!("/repos/{repo}/issues/{number}/comments");
            let body = json!({ "body": format!("{}\n\n{mark}", render(body)?) });
            vec![Call::GitHub {
                method: Method::POST,
                path: list.clone(),
                body: Some(body),
                idempotent: false,
                ok_status: None,
                once: Some(Once { list, field: "body", mark }),
            }]
        }
        Action::AddLabels(labels) => {
            let path = format!("/repos/{}/issues/{}/labels", repo()?, number()?);
            vec![write(Method::POST, path, json!({ "labels": render_all(labels)? }), true)]
        }
        Action::RemoveLabels(labels) => {
            let (repo, number) = (repo()?, number()?);
            render_all(labels)?
                .into_iter()
                .map(|label| Call::GitHub {
                    method: Method::DELETE,
                    path: format!("/repos/{repo}/issues/{number}/labels/{}", encode(&label)),
                    body: None,
                    idempotent: true,
                    ok_status: Some(404),
                    once: None,
                })
                .collect()
        }
        Action::Assign(users) => {
            let path = format!("/repos/{}/issues/{}/assignees", repo()?, number()?);
            vec![write(Method::POST, path, json!({ "assignees": render_all(users)? }), true)]
        }
        Action::RequestReviewers(users) => {
            // Pull request events carry `pull_request`; comments on one carry `issue.pull_request`.
            if payload.get("pull_request").is_none() && payload.pointer("/issue/pull_request").is_none() {
                return Err("request_reviewers needs a pull request delivery".into());
            }
            let path = format!("/repos/{}/pulls/{}/requested_reviewers", repo()?, number()?);
            vec![write(Method::POST, path, json!({ "reviewers": render_all(users)? }), true)]
        }
        Action::Close | Action::Reopen => {
            let state = if matches!(action, Action::Close) { "closed" } else { "open" };
            let path = format!("/repos/{}/issues/{}", repo()?, number()?);
            vec![write(Method::PATCH, path, json!({ "state": state }), true)]
        }
        Action::Status { state, context, description, target_url } => {
            let sha = head_sha(payload).ok_or("the delivery names no commit (push `after`, pull request head)")?;
            let mut body = json!({ "state": state, "context": render(context)? });
            if let Some(d) = description {
                body["description"] = json!(render(d)?);
            }
            if let Some(u) = target_url {
                body["target_url"] = json!(render(u)?);
            }
            // A second identical status replaces the first: safe to repeat.
            vec![write(Method::POST, format!("/repos/{}/statuses/{sha}", repo()?), body, true)]
        }
        Action::CheckRun { name, conclusion, title, summary } => {
            let repo = repo()?;
            let sha = head_sha(payload).ok_or("the delivery names no commit (push `after`, pull request head)")?;
            let name = render(name)?;
            let external_id = format!("webhookd:{}:{}:{index}", delivery.id(), rule.name);
            let mut body = json!({
                "name": name, "head_sha": sha, "status": "completed", "conclusion": conclusion, "external_id": external_id,
            });
            if title.is_some() || summary.is_some() {
                let title = title.as_ref().map(render).transpose()?.unwrap_or_else(|| name.clone());
                let summary = summary.as_ref().map(render).transpose()?.unwrap_or_default();
                body["output"] = json!({ "title": title, "summary": summary });
            }
            let list = format!("/repos/{repo}/commits/{sha}/check-runs?check_name={}", encode(&name));
            vec![Call::GitHub {
                method: Method::POST,
                path: format!("/repos/{repo}/check-runs"),
                body: Some(body),
                idempotent: false,
                ok_status: None,
                once: Some(Once { list, field: "external_id", mark: external_id }),
            }]
        }
        Action::Dispatch { event_type, client_payload } => {
            let payload_fields: BTreeMap<&String, String> =
                client_payload.iter().map(|(k, t)| Ok((k, render(t)?))).collect::<Result<_, String>>()?;
            let body = json!({ "event_type": render(event_type)?, "client_payload": payload_fields });
            vec![write(Method::POST, format!("/repos/{}/dispatches", repo()?), body, false)]
        }
        Action::Forward { url, secret } => {
            let h = &delivery.headers;
            let mut headers = vec![
                ("Content-Type".to_owned(), delivery.content_kind.mime().to_owned()),
                ("X-GitHub-Event".to_owned(), h.event.to_string()),
                ("X-GitHub-Delivery".to_owned(), h.delivery_id.to_string()),
                ("X-Hub-Signature-256".to_owned(), signature::sign(secret, &delivery.raw)),
            ];
            for (name, value) in [
                ("X-GitHub-Hook-ID", &h.hook_id),
                ("X-GitHub-Hook-Installation-Target-Type", &h.target_type),
                ("X-GitHub-Hook-Installation-Target-ID", &h.target_id),
            ] {
                if let Some(value) = value {
                    headers.push((name.to_owned(), value.clone()));
                }
            }
            vec![Call::Forward { url: url.clone(), headers, body: delivery.raw.clone() }]
        }
    })
}

/// The commit a delivery is about.
pub fn head_sha(payload: &Value) -> Option<&str> {
    [
        "/pull_request/head/sha",
        "/check_suite/head_sha",
        "/check_run/head_sha",
        "/workflow_run/head_sha",
        "/after",
        "/sha",
    ]
    .iter()
    .find_map(|p| payload.pointer(p).and_then(Value::as_str))
    .filter(|sha| !sha.bytes().all(|b| b == b'0'))
}

/// Percent-encodes a path segment or query value.
fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>().replace('+', "%20")
}
