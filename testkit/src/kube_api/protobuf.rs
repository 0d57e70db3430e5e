//! kubectl 1.32's typed clients (`kubectl create namespace`, `create
//! configmap`, `auth can-i`) write their bodies in Kubernetes protobuf
//! (`application/vnd.kubernetes.protobuf`) and do not fall back to JSON. This
//! reads the few kinds those commands send into the JSON the rest of the
//! server works on: the `k8s\0` envelope (`runtime.Unknown`), ObjectMeta's
//! name, generateName, namespace, labels and annotations, a ConfigMap's data,
//! a SelfSubjectAccessReview's attributes. Other kinds are refused with 415
//! (their `kubectl create -f` form is JSON and served).

use serde_json::{Map, Value, json};

/// A field's value: bytes (strings, messages, map entries), or a number,
/// which none of the kinds read here needs.
enum Field<'a> {
    Bytes(&'a [u8]),
    Number,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// A message's fields, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let field = match key & 7 {
            0 => {
                varint(buf, &mut pos)?;
                Field::Number
            }
            1 | 5 => {
                pos += if key & 7 == 1 { 8 } else { 4 };
                Field::Number
            }
            2 => {
                let len =
                    usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length too large")?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                let bytes = &buf[pos..end];
                pos = end;
                Field::Bytes(bytes)
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        out.push((key >> 3, field));
    }
    if pos > buf.len() {
        return Err("truncated fixed-size field".into());
    }
    Ok(out)
}

fn bytes<'a>(fs: &[(u64, Field<'a>)], n: u64) -> Option<&'a [u8]> {
    fs.iter().rev().find_map(|(k, f)| match f {
        Field::Bytes(b) if *k == n => Some(*b),
        _ => None,
    })
}

fn string(fs: &[(u64, Field<'_>)], n: u64) -> Option<String> {
    bytes(fs, n).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn message<'a>(fs: &[(u64, Field<'a>)], n: u64) -> Result<Vec<(u64, Field<'a>)>, String> {
    bytes(fs, n).map_or(Ok(Vec::new()), fields)
}

/// A `map<string, string>` field (repeated key 1, value 2 entries).
fn string_map(fs: &[(u64, Field<'_>)], n: u64) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, f) in fs {
        if let (true, Field::Bytes(entry)) = (*k == n, f) {
            let entry = fields(entry)?;
            out.insert(
                string(&entry, 1).unwrap_or_default(),
                string(&entry, 2).unwrap_or_default().into(),
            );
        }
    }
    Ok(out)
}

fn set(object: &mut Value, key: &str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        object[key] = v.into();
    }
}

fn object_meta(fs: &[(u64, Field<'_>)]) -> Result<Value, String> {
    let mut meta = json!({});
    set(&mut meta, "name", string(fs, 1));
    set(&mut meta, "generateName", string(fs, 2));
    set(&mut meta, "namespace", string(fs, 3));
    for (key, n) in [("labels", 11), ("annotations", 12)] {
        let map = string_map(fs, n)?;
        if !map.is_empty() {
            meta[key] = Value::Object(map);
        }
    }
    Ok(meta)
}

/// The JSON of a protobuf body.
pub(crate) fn to_json(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(b"k8s\0")
        .ok_or("no k8s protobuf envelope (magic k8s\\0)")?;
    let unknown = fields(unknown)?;
    let type_meta = message(&unknown, 1)?;
    let api_version = string(&type_meta, 1).unwrap_or_default();
    let kind = string(&type_meta, 2).unwrap_or_default();
    let raw = fields(bytes(&unknown, 2).unwrap_or_default())?;
    let mut object = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": object_meta(&message(&raw, 1)?)?,
    });
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => {}
        ("v1", "ConfigMap") => {
            let data = string_map(&raw, 2)?;
            if !data.is_empty() {
                object["data"] = Value::Object(data);
            }
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            let spec = message(&raw, 2)?;
            if bytes(&spec, 1).is_some() {
                let attrs = message(&spec, 1)?;
                let mut a = json!({});
                for (i, key) in [
                    "namespace",
                    "verb",
                    "group",
                    "version",
                    "resource",
                    "subresource",
                    "name",
                ]
                .into_iter()
                .enumerate()
                {
                    set(&mut a, key, string(&attrs, i as u64 + 1));
                }
                object["spec"] = json!({"resourceAttributes": a});
            } else if bytes(&spec, 2).is_some() {
                let attrs = message(&spec, 2)?;
                let mut a = json!({});
                set(&mut a, "path", string(&attrs, 1));
                set(&mut a, "verb", string(&attrs, 2));
                object["spec"] = json!({"nonResourceAttributes": a});
            }
        }
        _ => {
            return Err(format!(
                "this test API server reads protobuf only for Namespace, ConfigMap and SelfSubjectAccessReview, not {api_version} {kind}: send JSON (kubectl create -f)"
            ));
        }
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn reads_what_kubectl_create_namespace_sends() {
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let label = [field(1, b"team"), field(2, b"net")].concat();
        let meta = [field(1, b"kubetap"), field(11, &label)].concat();
        let raw = field(1, &meta);
        let body = [
            b"k8s\0".to_vec(),
            field(1, &type_meta),
            field(2, &raw),
            field(4, b""),
        ]
        .concat();
        assert_eq!(
            to_json(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubetap", "labels": {"team": "net"}}})
        );
        assert!(
            to_json(b"k8s\0\x0a\xff").is_err(),
            "a truncated body is an error"
        );
        assert!(to_json(b"{}").is_err());
    }
}
