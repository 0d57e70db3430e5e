//! The Helm chart in `deploy/chart/kubetap`, rendered without Helm.
//!
//! The chart is the one source of what kubetap installs: Helm users install
//! it as it is, and `kubetap install` renders the same templates with the
//! same values (`values.yaml`, overlaid with the CLI's configuration) and
//! applies the objects. The templates are built into the binary, so an
//! install fetches nothing.
//!
//! Rendering is Go's text/template (the `gtmpl` crate) with the few Helm
//! functions the templates use: `default`, `required`, `quote`, `b64enc`.
//! A template may use nothing else; the chart test renders the chart with
//! Go's own text/template too and wants the same objects.
//!
//! Every object is checked here against its Kubernetes type (k8s-openapi):
//! a field the type does not have, or a value of the wrong type, is an
//! error naming the template, not a surprise from the API server.

use base64::Engine as _;
use gtmpl::{Context, FuncError, Template, Value};
use serde_json::Value as Json;
use std::collections::HashMap;

pub const CHART_YAML: &str = include_str!("../../../deploy/chart/kubetap/Chart.yaml");
pub const VALUES_YAML: &str = include_str!("../../../deploy/chart/kubetap/values.yaml");

/// The chart's templates, by file name, in the order their objects are
/// applied (what others refer to comes first).
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../../../deploy/chart/kubetap/templates/namespace.yaml"),
    ),
    (
        "serviceaccounts.yaml",
        include_str!("../../../deploy/chart/kubetap/templates/serviceaccounts.yaml"),
    ),
    (
        "rbac.yaml",
        include_str!("../../../deploy/chart/kubetap/templates/rbac.yaml"),
    ),
    (
        "secrets.yaml",
        include_str!("../../../deploy/chart/kubetap/templates/secrets.yaml"),
    ),
    (
        "hub.yaml",
        include_str!("../../../deploy/chart/kubetap/templates/hub.yaml"),
    ),
    (
        "worker.yaml",
        include_str!("../../../deploy/chart/kubetap/templates/worker.yaml"),
    ),
];

/// The release name Helm would be given (`helm install kubetap …`).
pub const RELEASE: &str = "kubetap";

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the chart's {file}: {message}")]
    Template { file: String, message: String },
    #[error("the chart's {file} rendered YAML that does not parse: {error}")]
    Yaml { file: String, error: String },
    #[error("the chart's {file}: {kind} {name}: {why}")]
    Object {
        file: String,
        kind: String,
        name: String,
        why: String,
    },
    #[error("values: {0}")]
    Values(String),
}

/// One rendered object and the template it came from.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub template: &'static str,
    pub object: Json,
}

impl Rendered {
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// `values.yaml` as JSON.
pub fn default_values() -> Json {
    parse_yaml_doc(VALUES_YAML).expect("the chart's values.yaml parses (a test renders it)")
}

/// The chart's `appVersion`, which is kubetap's version (a test keeps them equal).
pub fn app_version() -> String {
    parse_yaml_doc(CHART_YAML)
        .ok()
        .and_then(|c| c["appVersion"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn parse_yaml_doc(text: &str) -> Result<Json, String> {
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

/// Parses a values file (YAML or JSON) as Helm's `-f` does.
pub fn parse_values(text: &str) -> Result<Json, ChartError> {
    let values = parse_yaml_doc(text).map_err(ChartError::Values)?;
    match values {
        Json::Object(_) => Ok(values),
        Json::Null => Ok(Json::Object(Default::default())),
        _ => Err(ChartError::Values("a values file holds a mapping".into())),
    }
}

/// Overlays `over` on `base` as Helm merges values: mappings key by key,
/// a null removes the key, anything else is replaced.
pub fn merge(base: &mut Json, over: Json) {
    match (base, over) {
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                    continue;
                }
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Renders every template with `values` (already merged over the
/// defaults) for a release in `namespace`.
pub fn render(values: &Json, namespace: &str) -> Result<Vec<Rendered>, ChartError> {
    let context = serde_json::json!({
        "Values": values,
        "Release": {"Name": RELEASE, "Namespace": namespace, "Service": "Helm"},
        "Chart": {
            "Name": "kubetap",
            "Version": app_version(),
            "AppVersion": app_version(),
        },
    });
    let context = Context::from(to_template_value(&context));
    let mut out = Vec::new();
    for (file, text) in TEMPLATES {
        let mut template = Template::default();
        template.add_funcs(&[
            ("default", default as gtmpl::Func),
            ("required", required as gtmpl::Func),
            ("quote", quote as gtmpl::Func),
            ("b64enc", b64enc as gtmpl::Func),
        ]);
        let template_error = |message: String| ChartError::Template {
            file: file.to_string(),
            message,
        };
        template
            .parse(*text)
            .map_err(|e| template_error(e.to_string()))?;
        let yaml = template
            .render(&context)
            .map_err(|e| template_error(exec_message(&e.to_string())))?;
        let docs: Vec<Json> = serde_saphyr::from_multiple(&yaml).map_err(|e| ChartError::Yaml {
            file: file.to_string(),
            error: e.to_string(),
        })?;
        for object in docs {
            if object == Json::Null {
                continue;
            }
            let rendered = Rendered {
                template: file,
                object,
            };
            check_type(&rendered)?;
            out.push(rendered);
        }
    }
    Ok(out)
}

/// gtmpl wraps a function's error in its own words; the part a user needs
/// is the function's message (`token is required …`).
fn exec_message(text: &str) -> String {
    match text.find(REQUIRED_PREFIX) {
        Some(at) => text[at + REQUIRED_PREFIX.len()..].trim().to_string(),
        None => text.to_string(),
    }
}

const REQUIRED_PREFIX: &str = "required:";

fn to_template_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (None, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(a) => Value::Array(a.iter().map(to_template_value).collect()),
        Json::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_template_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// Helm's (sprig's) idea of an empty value.
fn empty(value: &Value) -> bool {
    match value {
        Value::Nil | Value::NoValue => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) | Value::Map(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Function(_) => false,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Nil | Value::NoValue => String::new(),
        other => other.to_string(),
    }
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(FuncError::ExactlyXArgs(name.to_string(), n))
    }
}

/// `default DEFAULT VALUE`: VALUE, or DEFAULT when VALUE is empty.
fn default(args: &[Value]) -> Result<Value, FuncError> {
    arity("default", args, 2)?;
    Ok(if empty(&args[1]) {
        args[0].clone()
    } else {
        args[1].clone()
    })
}

/// `required MESSAGE VALUE`: VALUE, or rendering stops with MESSAGE.
fn required(args: &[Value]) -> Result<Value, FuncError> {
    arity("required", args, 2)?;
    if empty(&args[1]) {
        return Err(FuncError::Generic(format!(
            "{REQUIRED_PREFIX} {}",
            text(&args[0])
        )));
    }
    Ok(args[1].clone())
}

/// `quote VALUE`: VALUE as a double-quoted string.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    arity("quote", args, 1)?;
    Ok(Value::from(format!("{:?}", text(&args[0]))))
}

/// `b64enc VALUE`: VALUE's text in standard base64.
fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    arity("b64enc", args, 1)?;
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(text(&args[0])),
    ))
}

/// Deserializes `object` as the k8s-openapi type of its kind and wants the
/// same JSON back: a misspelt or misplaced field is dropped by the type, so
/// the round trip tells.
fn check_type(rendered: &Rendered) -> Result<(), ChartError> {
    use k8s_openapi::api::{apps, core, rbac};
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        object: &Json,
    ) -> Result<Json, String> {
        let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
    let object = &rendered.object;
    let back = match rendered.kind() {
        "Namespace" => round_trip::<core::v1::Namespace>(object),
        "ServiceAccount" => round_trip::<core::v1::ServiceAccount>(object),
        "Secret" => round_trip::<core::v1::Secret>(object),
        "Service" => round_trip::<core::v1::Service>(object),
        "ClusterRole" => round_trip::<rbac::v1::ClusterRole>(object),
        "ClusterRoleBinding" => round_trip::<rbac::v1::ClusterRoleBinding>(object),
        "Deployment" => round_trip::<apps::v1::Deployment>(object),
        "DaemonSet" => round_trip::<apps::v1::DaemonSet>(object),
        other => Err(format!("kind {other:?} is not one kubetap installs")),
    };
    let why = match back {
        Ok(back) if &back == object => return Ok(()),
        Ok(back) => format!(
            "fields the type does not have or does not keep as written: {}",
            differences(object, &back, "").join(", ")
        ),
        Err(e) => e,
    };
    Err(ChartError::Object {
        file: rendered.template.to_string(),
        kind: rendered.kind().to_string(),
        name: rendered.name().to_string(),
        why,
    })
}

/// Paths where `a` and `b` differ, for the error above.
fn differences(a: &Json, b: &Json, at: &str) -> Vec<String> {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let mut out = Vec::new();
            for (k, v) in x {
                let path = format!("{at}.{k}");
                match y.get(k) {
                    Some(w) => out.extend(differences(v, w, &path)),
                    None => out.push(path),
                }
            }
            out
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .flat_map(|(i, (v, w))| differences(v, w, &format!("{at}[{i}]")))
            .collect(),
        _ if a == b => Vec::new(),
        _ => vec![at.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values_with_secrets() -> Json {
        let mut values = default_values();
        merge(
            &mut values,
            serde_json::json!({
                "createNamespace": true,
                "token": "0123456789abcdef0123",
                "certs": {"ca": "CA", "hub": "HUB", "hubKey": "HK", "worker": "W", "workerKey": "WK"},
            }),
        );
        values
    }

    #[test]
    fn the_chart_renders_every_object_kubetap_installs() {
        let objects = render(&values_with_secrets(), "kubetap").unwrap();
        let names: Vec<String> = objects
            .iter()
            .map(|o| format!("{}/{}", o.kind(), o.name()))
            .collect();
        assert_eq!(
            names,
            [
                "Namespace/kubetap",
                "ServiceAccount/kubetap-hub",
                "ServiceAccount/kubetap-worker",
                "ClusterRole/kubetap-hub-kubetap",
                "ClusterRoleBinding/kubetap-hub-kubetap",
                "Secret/kubetap-token",
                "Secret/kubetap-hub-certs",
                "Secret/kubetap-worker-certs",
                "Service/kubetap-hub",
                "Deployment/kubetap-hub",
                "DaemonSet/kubetap-worker",
            ]
        );
        for o in &objects {
            assert_eq!(
                o.object["metadata"]["labels"]["app.kubernetes.io/part-of"],
                "kubetap",
                "{}",
                o.name()
            );
        }
        let token = objects
            .iter()
            .find(|o| o.name() == "kubetap-token")
            .unwrap();
        assert_eq!(
            token.object["data"]["token"],
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM="
        );
        let hub = objects.iter().find(|o| o.kind() == "Deployment").unwrap();
        let container = &hub.object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["image"],
            format!("ghcr.io/kubetap/tap-hub:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(container["resources"]["limits"]["cpu"], "1");
    }

    #[test]
    fn the_worker_asks_for_the_capabilities_of_its_mode_and_is_not_privileged() {
        let caps = |tls: bool| {
            let mut values = values_with_secrets();
            merge(&mut values, serde_json::json!({"worker": {"tls": tls}}));
            let objects = render(&values, "kt").unwrap();
            let ds = objects.iter().find(|o| o.kind() == "DaemonSet").unwrap();
            let c = &ds.object["spec"]["template"]["spec"]["containers"][0];
            assert_eq!(c["securityContext"]["privileged"], false);
            assert_eq!(
                c["args"][0], "--hub=https://kubetap-hub.kt.svc:8898",
                "the worker dials the hub's service in the release namespace"
            );
            (
                c["securityContext"]["capabilities"]["add"].clone(),
                c["args"].as_array().unwrap().contains(&"--tls".into()),
            )
        };
        assert_eq!(
            caps(false),
            (
                serde_json::json!(["NET_RAW", "SYS_ADMIN", "SYS_PTRACE"]),
                false
            )
        );
        assert_eq!(
            caps(true),
            (
                serde_json::json!(["NET_RAW", "SYS_ADMIN", "SYS_PTRACE", "BPF", "PERFMON"]),
                true
            )
        );
    }

    #[test]
    fn a_missing_required_value_names_itself() {
        let mut values = values_with_secrets();
        merge(&mut values, serde_json::json!({"token": ""}));
        let e = render(&values, "kubetap").unwrap_err().to_string();
        assert!(
            e.contains("secrets.yaml") && e.contains("token is required"),
            "{e}"
        );
    }

    #[test]
    fn a_field_the_type_does_not_have_is_an_error_naming_it() {
        let rendered = Rendered {
            template: "x.yaml",
            object: serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "s"},
                "spec": {"ports": [{"port": 1, "tragetPort": 2}]},
            }),
        };
        let e = check_type(&rendered).unwrap_err().to_string();
        assert!(e.contains(".spec.ports[0].tragetPort"), "{e}");
    }

    #[test]
    fn values_merge_as_helm_merges_them() {
        let mut base = serde_json::json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"});
        merge(
            &mut base,
            serde_json::json!({"a": {"c": [3], "e": true}, "d": null}),
        );
        assert_eq!(
            base,
            serde_json::json!({"a": {"b": 1, "c": [3], "e": true}})
        );
    }
}
