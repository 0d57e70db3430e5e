//! `labelSelector` and `fieldSelector`, parsed and matched as the real
//! server does for the kinds served here.

use serde_json::Value;

use super::resources::Resource;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Label {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` (all requirements must hold).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Label>);

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 316
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn valid_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut out = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            out.push(Self::requirement(part).ok_or_else(|| {
                format!("unable to parse requirement: found '{part}', expected: key, !key, key=value, key!=value, key in (...), key notin (...)")
            })?);
        }
        Ok(LabelSelector(out))
    }

    fn requirement(part: &str) -> Option<Label> {
        if let Some(key) = part.strip_prefix('!') {
            let key = key.trim();
            return valid_key(key).then(|| Label::NotExists(key.into()));
        }
        for (op, neg) in [(" notin ", true), (" in ", false)] {
            if let Some((key, set)) = part.split_once(op) {
                let key = key.trim();
                let set = set.trim().strip_prefix('(')?.strip_suffix(')')?;
                let values: Vec<String> = set
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
                    .collect();
                if !valid_key(key) || values.iter().any(|v| !valid_value(v)) {
                    return None;
                }
                return Some(if neg {
                    Label::NotIn(key.into(), values)
                } else {
                    Label::In(key.into(), values)
                });
            }
        }
        let pair = |sep: &str| {
            part.split_once(sep)
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        };
        let checked =
            |(k, v): (String, String)| (valid_key(&k) && valid_value(&v)).then_some((k, v));
        if let Some(kv) = pair("!=") {
            let (k, v) = checked(kv)?;
            return Some(Label::NotEquals(k, v));
        }
        if let Some(kv) = pair("==").or_else(|| pair("=")) {
            let (k, v) = checked(kv)?;
            return Some(Label::Equals(k, v));
        }
        valid_key(part).then(|| Label::Exists(part.into()))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            Label::Equals(k, v) => get(k) == Some(v.as_str()),
            Label::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Label::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Label::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Label::Exists(k) => get(k).is_some(),
            Label::NotExists(k) => get(k).is_none(),
        })
    }
}

/// The fields each kind can be selected by, beside `metadata.name` and
/// `metadata.namespace` (the real server's lists for them, in part).
fn fields(resource: &Resource) -> &'static [&'static str] {
    match resource.plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "namespaces" => &["status.phase"],
        "nodes" => &["spec.unschedulable"],
        "secrets" => &["type"],
        "replicasets" => &["status.replicas"],
        _ => &[],
    }
}

/// A parsed `fieldSelector`: (field, value, whether it must equal).
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector(Vec<(String, String, bool)>);

impl FieldSelector {
    pub fn parse(s: &str, resource: &Resource) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let field = field.trim();
            if !["metadata.name", "metadata.namespace"].contains(&field)
                && !fields(resource).contains(&field)
            {
                return Err(format!("field label not supported: {field}"));
            }
            out.push((field.to_string(), value.trim().to_string(), equal));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, value, equal)| {
            let found = field_value(object, field);
            (found == *value) == *equal
        })
    }
}

/// A field's value as the selector compares it: text, a number or a boolean
/// written out, `""` when missing (so `spec.nodeName=` finds unscheduled pods).
fn field_value(object: &Value, field: &str) -> String {
    let field = if field == "source" {
        "source.component"
    } else {
        field
    };
    let mut at = object;
    for key in field.split('.') {
        match at.get(key) {
            Some(v) => at = v,
            None => return String::new(),
        }
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let table = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (db, web)", true),
            ("app in (db)", false),
            ("app notin (db)", true),
            ("app notin (web,db)", false),
            ("missing notin (web)", true),
            ("tier", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=web,tier in (front,back)", true),
            ("app=web,tier=back", false),
        ];
        for (sel, want) in table {
            let parsed = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(parsed.matches(&obj), want, "{sel}");
        }
        for bad in ["app in web", "app=(x", "=x", "a b=c", "app in (a b)"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn field_selectors() {
        let pods = super::super::resources::lookup("pods", None).unwrap();
        let pod = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {}, "status": {"phase": "Running"}});
        let table = [
            ("metadata.name=a", true),
            ("metadata.name!=a", false),
            ("metadata.namespace==ns,status.phase=Running", true),
            ("status.phase!=Running", false),
            ("spec.nodeName=", true),
            ("spec.nodeName=n1", false),
        ];
        for (sel, want) in table {
            let parsed = FieldSelector::parse(sel, pods).unwrap();
            assert_eq!(parsed.matches(&pod), want, "{sel}");
        }
        let err = FieldSelector::parse("spec.foo=x", pods).unwrap_err();
        assert_eq!(err, "field label not supported: spec.foo");
        assert!(FieldSelector::parse("nonsense", pods).is_err());
    }
}
