//! Patches: JSON merge patch (also standing in for strategic merge patch,
//! whose list merging is not modelled: lists are replaced whole) and an
//! approximation of server-side apply.
//!
//! Server-side apply here: a field is a path of map keys down to a leaf (a
//! scalar, a list — lists are atomic, no `k:{…}` keys — or an empty map).
//! Each manager's applied fields are kept in `metadata.managedFields`
//! (operation `Apply`, `fieldsV1` as the real server writes it). Applying
//! merges the configuration into the live object, removes the fields the
//! manager applied last time and no longer applies (unless another manager
//! owns them too), and reports a conflict when another manager owns a field
//! with a different value, unless `force`, which takes the field over. A
//! result equal to the live object, with the same fields owned, is no change:
//! no new resourceVersion, no event.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field: the map keys from the object's root to a leaf.
pub(crate) type Path = Vec<String>;

/// RFC 7386: `null` removes, maps merge, anything else replaces. With
/// `strategic`, directive keys (`$setElementOrder/…`, `$patch`, `$retainKeys`)
/// are dropped.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if strategic && key.starts_with('$') {
            continue;
        }
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(
                map.entry(key.clone()).or_insert(Value::Null),
                value,
                strategic,
            );
        }
    }
}

/// Fields that are the object's identity or the server's, never owned.
fn skipped(path: &[String]) -> bool {
    match path {
        [k] => k == "apiVersion" || k == "kind",
        [m, k] if m == "metadata" => matches!(
            k.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The leaf fields an object sets.
pub(crate) fn fields(object: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    path.push(k.clone());
                    if !skipped(path) {
                        walk(child, path, out);
                    }
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(object, &mut Vec::new(), &mut out);
    out
}

/// `fieldsV1` of a set of fields, as the real server writes it (`f:` keys,
/// `{}` leaves).
pub(crate) fn fields_v1(fields: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut at = &mut root;
        for key in path {
            let next = at
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
            at = next.as_object_mut().expect("only maps are inserted");
        }
    }
    Value::Object(root)
}

/// The fields a `fieldsV1` names; a map keyed by `k:`/`v:`/`i:` (a list's
/// items, as a real server writes) counts as its list, whole.
pub(crate) fn parse_fields_v1(value: &Value) -> BTreeSet<Path> {
    fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(map) = v.as_object() else { return };
        let named: Vec<(&str, &Value)> = map
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("f:").map(|k| (k, v)))
            .collect();
        let items = map
            .keys()
            .any(|k| k.len() > 2 && k.as_bytes()[1] == b':' && !k.starts_with("f:"));
        if (named.is_empty() || items) && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, child) in named {
            path.push(k.to_string());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn get<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |at, key| at.get(key))
}

/// Removes a field, and the maps it leaves empty below the top level.
fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = &mut *object;
    for key in parents {
        match at.get_mut(key) {
            Some(v) => at = v,
            None => return,
        }
    }
    if let Some(map) = at.as_object_mut() {
        map.remove(last);
    }
    if parents.len() > 1
        && get(object, parents).is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
    {
        remove(object, parents);
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub(crate) struct Managed {
    pub manager: String,
    pub operation: String,
    pub subresource: Option<String>,
    pub fields: BTreeSet<Path>,
    rest: Map<String, Value>,
}

pub(crate) fn read_managed(object: &Value) -> Vec<Managed> {
    let entries = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let mut rest = e.as_object()?.clone();
            let text = |rest: &mut Map<String, Value>, k: &str| {
                rest.remove(k).and_then(|v| v.as_str().map(String::from))
            };
            Some(Managed {
                manager: text(&mut rest, "manager").unwrap_or_default(),
                operation: text(&mut rest, "operation").unwrap_or_default(),
                subresource: text(&mut rest, "subresource"),
                fields: rest
                    .remove("fieldsV1")
                    .map(|f| parse_fields_v1(&f))
                    .unwrap_or_default(),
                rest,
            })
        })
        .collect()
}

pub(crate) fn write_managed(object: &mut Value, managed: &[Managed]) {
    let entries: Vec<Value> = managed
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = m.rest.clone();
            e.insert("manager".into(), m.manager.clone().into());
            e.insert("operation".into(), m.operation.clone().into());
            e.insert("fieldsType".into(), "FieldsV1".into());
            e.insert("fieldsV1".into(), fields_v1(&m.fields));
            if let Some(s) = &m.subresource {
                e.insert("subresource".into(), s.clone().into());
            }
            Value::Object(e)
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

/// Who writes an object, for its `managedFields`.
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    /// `Apply`, or `Update` for create, update and patches.
    pub operation: &'a str,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
    pub now: &'a str,
}

/// Records that `writer` set `fields`: its entry gains them (an `Apply`
/// entry is replaced), other managers lose those whose value `changed`.
pub(crate) fn record(
    managed: &mut Vec<Managed>,
    writer: &Writer,
    fields: BTreeSet<Path>,
    changed: &BTreeSet<Path>,
) {
    let Writer {
        manager,
        operation,
        subresource,
        api_version,
        now,
    } = *writer;
    for other in managed.iter_mut() {
        if other.manager != manager || other.operation != operation {
            other.fields.retain(|f| !changed.contains(f));
        }
    }
    let entry = match managed
        .iter_mut()
        .position(|m| m.manager == manager && m.operation == operation)
    {
        Some(i) => &mut managed[i],
        None => {
            managed.push(Managed {
                manager: manager.into(),
                operation: operation.into(),
                subresource: subresource.map(String::from),
                fields: BTreeSet::new(),
                rest: Map::new(),
            });
            managed.last_mut().expect("just pushed")
        }
    };
    if operation == "Apply" {
        entry.fields = fields;
    } else {
        entry.fields.extend(fields);
    }
    entry.rest.insert("apiVersion".into(), api_version.into());
    entry.rest.insert("time".into(), now.into());
    managed.retain(|m| !m.fields.is_empty());
}

/// The fields whose values differ between two objects (either side's).
pub(crate) fn changed(old: &Value, new: &Value) -> BTreeSet<Path> {
    fields(old)
        .union(&fields(new))
        .filter(|p| get(old, p) != get(new, p))
        .cloned()
        .collect()
}

/// A field another manager owns with another value than the one applied.
#[derive(Debug)]
pub(crate) struct Conflicts(pub Vec<(String, String)>);

impl Conflicts {
    /// The real server's wording: `Apply failed with 1 conflict: conflict
    /// with "kubectl" using apps/v1: .spec.replicas`.
    pub fn message(&self, api_version: &str) -> String {
        let n = self.0.len();
        let list: Vec<String> = self
            .0
            .iter()
            .map(|(m, f)| format!("conflict with \"{m}\" using {api_version}: {f}"))
            .collect();
        let s = if n == 1 { "" } else { "s" };
        format!("Apply failed with {n} conflict{s}: {}", list.join("\n"))
    }
}

/// Server-side apply of `config` by `manager` onto `live` (`{}` for a new
/// object): the new object with its `managedFields`, or `None` when nothing
/// would change.
pub(crate) fn apply(
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
) -> Result<Option<Value>, Conflicts> {
    let applied = fields(config);
    let mut managed = read_managed(live);
    let mut conflicts = Vec::new();
    for other in managed.iter_mut().filter(|m| m.manager != manager) {
        let theirs: Vec<Path> = other
            .fields
            .iter()
            .filter(|f| applied.contains(*f) && get(live, f) != get(config, f))
            .cloned()
            .collect();
        if force {
            other.fields.retain(|f| !theirs.contains(f));
        } else {
            conflicts.extend(
                theirs
                    .iter()
                    .map(|f| (other.manager.clone(), format!(".{}", f.join(".")))),
            );
        }
    }
    if !conflicts.is_empty() {
        return Err(Conflicts(conflicts));
    }
    let before = managed
        .iter()
        .find(|m| m.manager == manager && m.operation == "Apply")
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let mut object = live.clone();
    for gone in before.difference(&applied) {
        if !managed
            .iter()
            .any(|m| m.manager != manager && m.fields.contains(gone))
        {
            remove(&mut object, gone);
        }
    }
    merge_patch(&mut object, &strip_nulls(config), false);
    let same_object = without_managed(&object) == without_managed(live);
    if same_object && before == applied {
        return Ok(None);
    }
    let changed = changed(live, &object);
    let writer = Writer {
        manager,
        operation: "Apply",
        subresource: None,
        api_version,
        now,
    };
    record(&mut managed, &writer, applied, &changed);
    write_managed(&mut object, &managed);
    Ok(Some(object))
}

/// An applied configuration's `null`s mean "not set", not "remove".
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn without_managed(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    v
}

/// An empty object of a kind, for apply to create.
pub(crate) fn empty() -> Value {
    json!({})
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2025-01-01T00:00:00Z";

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(
            &mut doc,
            &json!({"a": "z", "c": {"f": null}, "l": [3], "$setElementOrder/l": []}),
            true,
        );
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v", "e": {}}});
        let set = fields(&obj);
        assert_eq!(set.len(), 3, "{set:?}");
        assert_eq!(parse_fields_v1(&fields_v1(&set)), set);
        let real = json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}}}}});
        let parsed = parse_fields_v1(&real);
        assert!(parsed.contains(&vec!["spec".to_string(), "containers".to_string()]));
        assert!(parsed.contains(&vec![
            "metadata".to_string(),
            "labels".to_string(),
            "a".to_string()
        ]));
    }

    #[test]
    fn apply_merges_removes_and_detects_no_change() {
        let first =
            json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
        let created = apply(&empty(), &first, "m", false, "v1", NOW)
            .unwrap()
            .unwrap();
        assert_eq!(created["data"]["k"], "v");
        assert!(
            apply(&created, &first, "m", false, "v1", NOW)
                .unwrap()
                .is_none(),
            "same config is no change"
        );
        // Another manager adds a label the first one never applied.
        let mut live = created.clone();
        live["metadata"]["labels"]["c"] = "3".into();
        let second = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "w"}});
        let next = apply(&live, &second, "m", false, "v1", NOW)
            .unwrap()
            .unwrap();
        assert_eq!(
            next["metadata"]["labels"],
            json!({"a": "1", "c": "3"}),
            "b was m's and is gone"
        );
        assert_eq!(next["data"]["k"], "w");
        // A second manager applying another value conflicts, unless forced.
        let other = json!({"metadata": {"name": "x"}, "data": {"k": "z"}});
        let Err(conflicts) = apply(&next, &other, "o", false, "v1", NOW) else {
            panic!("no conflict");
        };
        assert_eq!(
            conflicts.message("v1"),
            "Apply failed with 1 conflict: conflict with \"m\" using v1: .data.k"
        );
        let forced = apply(&next, &other, "o", true, "v1", NOW).unwrap().unwrap();
        assert_eq!(forced["data"]["k"], "z");
        let managers: Vec<String> = read_managed(&forced)
            .iter()
            .map(|m| m.manager.clone())
            .collect();
        assert_eq!(managers, ["m", "o"]);
        assert!(
            !read_managed(&forced)[0]
                .fields
                .contains(&vec!["data".to_string(), "k".to_string()])
        );
    }
}
