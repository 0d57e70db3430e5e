//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks
//! for, with the real server's columns for the kinds served (a subset of
//! them for some), and `PartialObjectMetadata` (kube-rs's metadata API).

use serde_json::{Value, json};

use super::resources::Resource;

/// What the client asked the server to print, from its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Object,
    Table,
    Metadata,
}

impl Form {
    /// The first form named in `Accept` that is served: `as=Table` (v1 or
    /// v1beta1, answered as v1), `as=PartialObjectMetadata[List]`, else the
    /// objects.
    pub fn from_accept(accept: &str) -> Form {
        for media in accept.split(',') {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            let meta = params.contains(&"g=meta.k8s.io");
            if meta && params.contains(&"as=Table") {
                return Form::Table;
            }
            if meta
                && (params.contains(&"as=PartialObjectMetadata")
                    || params.contains(&"as=PartialObjectMetadataList"))
            {
                return Form::Metadata;
            }
            if params
                .first()
                .is_some_and(|t| *t == "application/json" || *t == "*/*")
            {
                return Form::Object;
            }
        }
        Form::Object
    }

    /// The answer's Content-Type.
    pub fn content_type(self, list: bool) -> &'static str {
        match (self, list) {
            (Form::Object, _) => "application/json",
            (Form::Table, _) => "application/json;as=Table;v=v1;g=meta.k8s.io",
            (Form::Metadata, false) => {
                "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
            }
            (Form::Metadata, true) => {
                "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
            }
        }
    }
}

/// An object's `PartialObjectMetadata`.
pub(crate) fn metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A column: name, type, format, priority (1: only with `-o wide`).
type Column = (&'static str, &'static str, &'static str, u8);

const NAME: Column = ("Name", "string", "name", 0);
const AGE: Column = ("Age", "string", "", 0);

fn columns(r: &Resource) -> Vec<Column> {
    match (r.group, r.plural) {
        ("", "pods") => vec![
            NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            AGE,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
        ],
        ("", "namespaces") => vec![NAME, ("Status", "string", "", 0), AGE],
        ("", "nodes") => vec![
            NAME,
            ("Status", "string", "", 0),
            ("Roles", "string", "", 0),
            AGE,
            ("Version", "string", "", 0),
        ],
        ("", "services") => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            AGE,
        ],
        ("", "configmaps") => vec![NAME, ("Data", "integer", "", 0), AGE],
        ("", "secrets") => vec![
            NAME,
            ("Type", "string", "", 0),
            ("Data", "integer", "", 0),
            AGE,
        ],
        ("", "events") => vec![
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Message", "string", "", 0),
        ],
        ("apps", "deployments") => vec![
            NAME,
            ("Ready", "string", "", 0),
            ("Up-to-date", "string", "", 0),
            ("Available", "string", "", 0),
            AGE,
        ],
        ("apps", "daemonsets") => vec![
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            ("Up-to-date", "integer", "", 0),
            ("Available", "integer", "", 0),
            ("Node Selector", "string", "", 0),
            AGE,
        ],
        ("apps", "replicasets") => vec![
            NAME,
            ("Desired", "integer", "", 0),
            ("Current", "integer", "", 0),
            ("Ready", "integer", "", 0),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

/// k8s.io/apimachinery's `duration.HumanDuration`, as kubectl prints ages.
fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if h < 24 * 365 * 2 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn age(object: &Value, field: &str) -> Value {
    let since = object
        .pointer(field)
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
    match since {
        Some(t) => human(super::store::unix_now() - t.as_second()).into(),
        None => "<unknown>".into(),
    }
}

fn text(object: &Value, pointer: &str, missing: &str) -> Value {
    match object.pointer(pointer) {
        Some(Value::String(s)) if !s.is_empty() => s.clone().into(),
        Some(Value::Number(n)) => n.to_string().into(),
        _ => missing.into(),
    }
}

fn int(object: &Value, pointer: &str) -> Value {
    object
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .into()
}

fn count(object: &Value, pointer: &str) -> usize {
    match object.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// A pod's STATUS as kubectl shows it: a waiting or terminated container's
/// reason over the phase, `Terminating` while it is deleted.
fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let mut reason = text(pod, "/status/reason", "")
        .as_str()
        .filter(|s| !s.is_empty())
        .map(String::from)
        .unwrap_or_else(|| {
            text(pod, "/status/phase", "Unknown")
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
    for c in pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            reason = r.into();
        } else if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            reason = r.into();
        }
    }
    reason
}

fn cells(r: &Resource, o: &Value) -> Vec<Value> {
    let name: Value = text(o, "/metadata/name", "");
    let created = age(o, "/metadata/creationTimestamp");
    match (r.group, r.plural) {
        ("", "pods") => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let ready = statuses
                .into_iter()
                .flatten()
                .filter(|c| c["ready"].as_bool() == Some(true))
                .count();
            let restarts: i64 = statuses
                .into_iter()
                .flatten()
                .filter_map(|c| c["restartCount"].as_i64())
                .sum();
            let containers = count(o, "/spec/containers");
            vec![
                name,
                format!("{ready}/{containers}").into(),
                pod_status(o).into(),
                restarts.to_string().into(),
                created,
                text(o, "/status/podIP", "<none>"),
                text(o, "/spec/nodeName", "<none>"),
            ]
        }
        ("", "namespaces") => vec![name, text(o, "/status/phase", ""), created],
        ("", "nodes") => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            vec![
                name,
                ready.into(),
                "<none>".into(),
                created,
                text(o, "/status/nodeInfo/kubeletVersion", ""),
            ]
        }
        ("", "services") => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            vec![
                name,
                text(o, "/spec/type", "ClusterIP"),
                text(o, "/spec/clusterIP", "<none>"),
                "<none>".into(),
                if ports.is_empty() {
                    "<none>".into()
                } else {
                    ports.join(",").into()
                },
                created,
            ]
        }
        ("", "configmaps") => vec![
            name,
            (count(o, "/data") + count(o, "/binaryData")).into(),
            created,
        ],
        ("", "secrets") => vec![
            name,
            text(o, "/type", "Opaque"),
            count(o, "/data").into(),
            created,
        ],
        ("", "events") => {
            let object = format!(
                "{}/{}",
                o.pointer("/involvedObject/kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase(),
                o.pointer("/involvedObject/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            let seen = if o.pointer("/lastTimestamp").is_some_and(|t| t.is_string()) {
                "/lastTimestamp"
            } else {
                "/metadata/creationTimestamp"
            };
            vec![
                age(o, seen),
                text(o, "/type", ""),
                text(o, "/reason", ""),
                object.into(),
                text(o, "/message", ""),
            ]
        }
        ("apps", "deployments") => vec![
            name,
            format!(
                "{}/{}",
                int(o, "/status/readyReplicas"),
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )
            .into(),
            int(o, "/status/updatedReplicas"),
            int(o, "/status/availableReplicas"),
            created,
        ],
        ("apps", "daemonsets") => {
            let selector: Vec<String> = o
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            vec![
                name,
                int(o, "/status/desiredNumberScheduled"),
                int(o, "/status/currentNumberScheduled"),
                int(o, "/status/numberReady"),
                int(o, "/status/updatedNumberScheduled"),
                int(o, "/status/numberAvailable"),
                if selector.is_empty() {
                    "<none>".into()
                } else {
                    selector.join(",").into()
                },
                created,
            ]
        }
        ("apps", "replicasets") => vec![
            name,
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .into(),
            int(o, "/status/replicas"),
            int(o, "/status/readyReplicas"),
            created,
        ],
        _ => vec![name, created],
    }
}

/// A Table of `objects`; `with_columns` false leaves the column definitions
/// out, as the real server does after a watch's first event. `include`:
/// the `includeObject` parameter (`None`, `Object`, default `Metadata`).
pub(crate) fn table(
    r: &Resource,
    objects: &[&Value],
    resource_version: &str,
    with_columns: bool,
    include: &str,
) -> Value {
    let definitions: Vec<Value> = if with_columns {
        columns(r)
            .into_iter()
            .map(|(name, kind, format, priority)| {
                json!({"name": name, "type": kind, "format": format, "description": "", "priority": priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(r, o)});
            match include {
                "None" => {}
                "Object" => row["object"] = (*o).clone(),
                _ => row["object"] = metadata(o),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_as_kubectl_prints_them() {
        let table = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (900, "15m"),
            (3 * 3600 + 60, "3h1m"),
            (10 * 3600, "10h"),
            (3 * 86400 + 3600, "3d1h"),
            (20 * 86400, "20d"),
            (800 * 86400, "2y"),
        ];
        for (s, want) in table {
            assert_eq!(human(s), want, "{s}");
        }
    }

    #[test]
    fn accept_header_forms() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(Form::from_accept(kubectl), Form::Table);
        assert_eq!(Form::from_accept("application/json"), Form::Object);
        assert_eq!(
            Form::from_accept("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Form::Metadata
        );
        assert_eq!(Form::from_accept(""), Form::Object);
    }
}
