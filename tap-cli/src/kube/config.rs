//! `~/.kubetap/config.yaml`: the settings every Kubernetes command reads,
//! which its flags override. `kubetap config` prints the defaults as YAML;
//! `kubetap config -r` writes them to the file.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

/// The file, with the defaults and what each setting is for. `Config`'s
/// defaults are this text parsed (a test keeps the two the same).
pub const DEFAULT_YAML: &str = r#"# kubetap's configuration. Every kubetap command reads this file; a flag
# given on the command line wins over it.

# The kubeconfig file and context to use. Empty: $KUBECONFIG or
# ~/.kube/config, and its current context (as kubectl).
kubeconfig: ""
context: ""

# The namespace kubetap installs itself into (hub, workers, secrets).
kubetapNamespace: kubetap

# The local port the hub's UI and API are forwarded to, and whether
# `kubetap tap` and `kubetap view` open a browser on it.
port: 8899
openBrowser: true

# Values for kubetap's Helm chart (deploy/chart/kubetap/values.yaml lists
# them all), as `helm install -f` takes them. For an air-gapped cluster,
# point image.registry at your mirror.
values:
  image:
    registry: ghcr.io/kubetap
    tag: ""
  worker:
    tls: false
"#;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub kubeconfig: String,
    pub context: String,
    pub kubetap_namespace: String,
    pub port: u16,
    pub open_browser: bool,
    /// Overlaid on the chart's values.yaml.
    pub values: Json,
}

impl Default for Config {
    fn default() -> Config {
        serde_saphyr::from_str(DEFAULT_YAML).expect("DEFAULT_YAML parses (a test checks it)")
    }
}

/// `~/.kubetap/config.yaml`.
pub fn path() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow::anyhow!("HOME is not set: cannot find ~/.kubetap/config.yaml"))?;
    Ok(Path::new(&home).join(".kubetap").join("config.yaml"))
}

/// The configuration file's settings over the defaults; the defaults when
/// there is no file.
pub fn load(file: &Path) -> anyhow::Result<Config> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", file.display())),
    };
    parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (`kubetap config` prints a valid one)",
            file.display()
        )
    })
}

/// Settings in `text` over the defaults: a file may hold only some keys.
pub fn parse(text: &str) -> Result<Config, String> {
    let mut merged = serde_json::to_value(Config::default()).map_err(|e| e.to_string())?;
    let given: Json = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    match given {
        Json::Null => {}
        Json::Object(_) => super::chart::merge(&mut merged, given),
        _ => return Err("the file holds a mapping of settings".into()),
    }
    serde_json::from_value(merged).map_err(|e| e.to_string())
}

/// `kubetap config [-r]`.
pub fn run(write: bool) -> anyhow::Result<()> {
    if !write {
        print!("{DEFAULT_YAML}");
        return Ok(());
    }
    let file = path()?;
    let dir = file.parent().expect("the path has a directory");
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(&file, DEFAULT_YAML)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
    println!("wrote the default configuration to {}", file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        let c = parse(DEFAULT_YAML).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.kubetap_namespace, "kubetap");
        assert_eq!(c.port, 8899);
    }

    #[test]
    fn a_file_may_set_only_some_keys_and_a_wrong_one_is_named() {
        let c = parse("port: 9000\nvalues:\n  image:\n    tag: v9\n").unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.values["image"]["tag"], "v9");
        assert_eq!(c.values["image"]["registry"], "ghcr.io/kubetap");
        let e = parse("prot: 9000\n").unwrap_err();
        assert!(e.contains("prot"), "{e}");
        let e = parse("port: lots\n").unwrap_err();
        assert!(e.contains("port") || e.contains("invalid"), "{e}");
    }
}
