//! The chart and the CLI's manifests are one source: `kubetap install
//! --dry-run` renders deploy/chart/kubetap without a cluster; Go's own
//! text/template (the engine Helm uses; `tests/chart/render.go`) renders
//! the same chart with the same values and must give the same objects,
//! read back with PyYAML (YAML 1.1, as Helm's go-yaml reads numbers like
//! `0440`). Every object validates against the Kubernetes schemas
//! (kubernetes-validate, strict).

mod peers;

use peers::TempDir;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn kubetap() -> Command {
    let mut command = Command::new(peers::sibling("kubetap"));
    // Nothing may be read from a cluster: no kubeconfig is there.
    command.env("KUBECONFIG", "/nonexistent/kubeconfig");
    command
}

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/chart/kubetap")
}

fn run_ok(command: &mut Command, what: &str) -> Vec<u8> {
    let out = command.stderr(Stdio::piped()).output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The CLI's objects, keyed by kind/name.
fn by_name(items: &[Json]) -> std::collections::BTreeMap<String, Json> {
    items
        .iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o.clone(),
            )
        })
        .collect()
}

fn decoded(secret: &Json, key: &str) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][key].as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

const PY_YAML_TO_JSON: &str = "import json, sys, yaml\n\
docs = [d for d in yaml.safe_load_all(sys.stdin) if d is not None]\n\
print(json.dumps(docs))";

fn go_render(dir: &TempDir, overrides: &Json, namespace: &str) -> Vec<Json> {
    let defaults = run_ok(
        Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            ])
            .arg(chart_dir().join("values.yaml")),
        "values.yaml as JSON",
    );
    let (d, o) = (dir.path("defaults.json"), dir.path("overrides.json"));
    std::fs::write(&d, defaults).unwrap();
    std::fs::write(&o, overrides.to_string()).unwrap();
    let yaml = run_ok(
        Command::new("go")
            .env("GO111MODULE", "off")
            .env("GOCACHE", dir.path("gocache"))
            .arg("run")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart/render.go"))
            .arg(chart_dir())
            .args([&d, &o])
            .arg(namespace),
        "go run render.go",
    );
    let mut py = Command::new("python3")
        .args(["-c", PY_YAML_TO_JSON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(py.stdin.as_mut().unwrap(), &yaml).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML could not read Go's rendering");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The same objects from the CLI and from Go's text/template, for the
/// defaults and for a customised install.
#[test]
fn the_cli_renders_the_chart_as_go_templates_do() {
    if !testkit::require_tools("chart rendered by Go", false, &["go", "python3"]) {
        return;
    }
    let dir = TempDir::new("chart-oracle");
    let custom = json!({
        "image": {"registry": "mirror.internal:5000/kubetap", "pullPolicy": "Always"},
        "hub": {"memoryBudget": "1GiB", "resources": {"limits": {"memory": "2Gi"}}},
    });
    let custom_file = dir.path("custom.json");
    std::fs::write(&custom_file, custom.to_string()).unwrap();
    let cases: [(&str, Vec<&str>, Json); 2] = [
        ("defaults", vec![], json!({})),
        (
            "customised",
            vec![
                "-f",
                custom_file.to_str().unwrap(),
                "--tag",
                "v9.9.9",
                "--tls",
                "--kubetap-namespace",
                "observability",
            ],
            {
                let mut v = custom.clone();
                v["image"]["tag"] = "v9.9.9".into();
                v["worker"] = json!({"tls": true});
                v
            },
        ),
    ];
    for (what, args, mut overrides) in cases {
        let out = run_ok(
            kubetap()
                .args(["install", "--dry-run", "-o", "json"])
                .args(&args),
            what,
        );
        let list: Json = serde_json::from_slice(&out).unwrap();
        assert_eq!(list["kind"], "List");
        let ours = by_name(list["items"].as_array().unwrap());
        let namespace = ours
            .keys()
            .find_map(|k| k.strip_prefix("Namespace/"))
            .unwrap()
            .to_string();
        // The install's generated secrets, given to Go as values.
        let hub = &ours["Secret/kubetap-hub-certs"];
        let worker = &ours["Secret/kubetap-worker-certs"];
        overrides["createNamespace"] = true.into();
        overrides["token"] = decoded(&ours["Secret/kubetap-token"], "token").into();
        overrides["certs"] = json!({
            "ca": decoded(hub, "ca.pem"),
            "hub": decoded(hub, "hub.pem"),
            "hubKey": decoded(hub, "hub-key.pem"),
            "worker": decoded(worker, "worker.pem"),
            "workerKey": decoded(worker, "worker-key.pem"),
        });
        let go = by_name(&go_render(&dir, &overrides, &namespace));
        assert_eq!(
            ours.keys().collect::<Vec<_>>(),
            go.keys().collect::<Vec<_>>(),
            "{what}: the same objects"
        );
        for (name, object) in &ours {
            assert_eq!(object, &go[name], "{what}: {name} differs");
        }
        if what == "customised" {
            let ds = &ours["DaemonSet/kubetap-worker"]["spec"]["template"]["spec"];
            assert_eq!(
                ds["containers"][0]["image"],
                "mirror.internal:5000/kubetap/tap-worker:v9.9.9"
            );
            assert!(
                ds["containers"][0]["args"]
                    .as_array()
                    .unwrap()
                    .contains(&"--tls".into())
            );
            assert_eq!(namespace, "observability");
        }
    }
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    if !testkit::require_tools("kubernetes-validate", false, &["kubernetes-validate"]) {
        return;
    }
    let dir = TempDir::new("chart-validate");
    for (what, extra) in [("without TLS", None), ("with TLS", Some("--tls"))] {
        let yaml = run_ok(kubetap().args(["install", "--dry-run"]).args(extra), what);
        let file = dir.path("objects.yaml");
        std::fs::write(&file, &yaml).unwrap();
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "-k", "1.33.0"])
            .arg(&file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {said}");
        assert_eq!(said.matches(" passed ").count(), 11, "{what}: {said}");
    }
}

#[test]
fn config_prints_the_defaults_and_writes_them_and_every_command_reads_them() {
    let dir = TempDir::new("config-home");
    let printed = run_ok(kubetap().arg("config").env("HOME", dir.root()), "config");
    let out = run_ok(
        kubetap().args(["config", "-r"]).env("HOME", dir.root()),
        "config -r",
    );
    let file = dir.root().join(".kubetap/config.yaml");
    assert!(String::from_utf8_lossy(&out).contains(file.to_str().unwrap()));
    assert_eq!(std::fs::read(&file).unwrap(), printed);
    // The file is read: its registry reaches the objects, a flag wins over it.
    let text = String::from_utf8(printed)
        .unwrap()
        .replace("registry: ghcr.io/kubetap", "registry: registry.corp/kt");
    std::fs::write(&file, text).unwrap();
    let yaml = run_ok(
        kubetap()
            .args(["install", "--dry-run"])
            .env("HOME", dir.root()),
        "install reads the file",
    );
    assert!(String::from_utf8_lossy(&yaml).contains("image: registry.corp/kt/tap-hub:"));
    let yaml = run_ok(
        kubetap()
            .args(["install", "--dry-run", "--registry", "flag.corp"])
            .env("HOME", dir.root()),
        "a flag wins",
    );
    assert!(String::from_utf8_lossy(&yaml).contains("image: flag.corp/tap-hub:"));
    // A broken file is named, with what is wrong.
    std::fs::write(&file, "prot: 1\n").unwrap();
    let out = kubetap()
        .args(["install", "--dry-run"])
        .env("HOME", dir.root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("config.yaml") && err.contains("prot"), "{err}");
}

#[test]
fn completion_scripts_are_valid_for_their_shell() {
    let script = run_ok(kubetap().args(["completion", "bash"]), "completion bash");
    let dir = TempDir::new("completion");
    let file = dir.path("kubetap.bash");
    std::fs::write(&file, &script).unwrap();
    let status = Command::new("bash").arg("-n").arg(&file).status().unwrap();
    assert!(status.success(), "bash -n refuses the script");
    assert!(String::from_utf8_lossy(&script).contains("install"));
    for shell in ["zsh", "fish"] {
        assert!(!run_ok(kubetap().args(["completion", shell]), shell).is_empty());
    }
}
