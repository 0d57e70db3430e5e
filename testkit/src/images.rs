//! The hub's and the worker's container images (`deploy/docker/*.Dockerfile`):
//! static musl binaries built by cargo, each copied into an image `FROM
//! scratch` by `docker build`, and the Docker daemon that builds and runs
//! them. `cargo xtask images` and tap-cli's `images` test both go through
//! [`build`], so the images a test runs are the ones a user pushes.
//!
//! No registry is reachable on our machines: nothing here pulls an image.
//! The daemon is started without iptables, masquerading or its default
//! bridge ([`DOCKERD_FLAGS`]), so a container reaches only what a test wires
//! up for it.

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The target of the images' binaries: static, so an image needs no libc.
pub const MUSL: &str = "x86_64-unknown-linux-musl";

/// The images, by binary: each is `<registry>/<binary>:<tag>`, built from
/// `deploy/docker/<binary>.Dockerfile`.
pub const BINARIES: [&str; 2] = ["tap-hub", "tap-worker"];

/// How `ensure_daemon` starts dockerd when none answers.
pub const DOCKERD_FLAGS: [&str; 3] = ["--iptables=false", "--ip-masq=false", "--bridge=none"];

/// A built image.
#[derive(Debug, Clone)]
pub struct Image {
    /// `tap-hub` or `tap-worker`.
    pub binary: &'static str,
    /// `registry/binary:tag`.
    pub reference: String,
    /// The image's size as Docker reports it, in bytes.
    pub size: u64,
}

/// The chart's image registry (`image.registry` in values.yaml) and tag
/// (`image.tag`, or when empty the chart's `appVersion`): the defaults of
/// `cargo xtask images`, so that the images built are the ones an install
/// asks for.
pub fn chart_defaults(root: &Path) -> Result<(String, String)> {
    let chart = root.join("deploy/chart/kubetap");
    let values = read(&chart.join("values.yaml"))?;
    let registry = image_value(&values, "registry")
        .filter(|r| !r.is_empty())
        .context("deploy/chart/kubetap/values.yaml has no image.registry")?;
    let tag = match image_value(&values, "tag").filter(|t| !t.is_empty()) {
        Some(tag) => tag,
        None => read(&chart.join("Chart.yaml"))?
            .lines()
            .find_map(|l| l.strip_prefix("appVersion:"))
            .map(unquote)
            .context("deploy/chart/kubetap/Chart.yaml has no appVersion")?,
    };
    Ok((registry, tag))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `key` in the top-level `image:` block of values.yaml (a flat block of
/// scalars: the chart's own layout, not YAML at large).
fn image_value(values: &str, key: &str) -> Option<String> {
    let mut lines = values.lines().skip_while(|l| l.trim_end() != "image:");
    lines.next()?;
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':').map(unquote))
}

fn unquote(value: &str) -> String {
    let value = value.split(" #").next().unwrap_or(value).trim();
    value.trim_matches('"').trim_matches('\'').to_string()
}

/// True when `docker info` answers (a daemon runs and we may use it).
pub fn daemon_answers() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Closes the descriptors above 2 that bash has, then runs dockerd with
/// the script's arguments.
const CLOSE_INHERITED_AND_EXEC: &str = r#"for p in /proc/$$/fd/*; do n=${p##*/}; if [ "$n" -gt 2 ]; then exec {n}>&-; fi; done; exec dockerd "$@""#;

/// Starts dockerd with [`DOCKERD_FLAGS`], its output appended to `log`,
/// unless a daemon answers already; waits until `docker info` answers.
/// The daemon outlives the caller (it is the build cache's keeper).
pub fn ensure_daemon(log: &Path) -> Result<()> {
    if daemon_answers() {
        return Ok(());
    }
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    eprintln!(
        "starting dockerd {} (log: {})",
        DOCKERD_FLAGS.join(" "),
        log.display()
    );
    // Through bash, which first closes every descriptor but 0-2 that this
    // process inherited (a `flock` wrapper's lock, a jobserver's pipe): the
    // daemon outlives its caller and must not hold them. Rust opens its own
    // with close-on-exec; bash's `{n}>&-` closes descriptor number $n.
    let mut dockerd = Command::new("bash");
    dockerd
        .args(["-c", CLOSE_INHERITED_AND_EXEC, "dockerd"])
        .args(DOCKERD_FLAGS)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // Its own process group: a Ctrl-C meant for the caller leaves it running.
    std::os::unix::process::CommandExt::process_group(&mut dockerd, 0);
    let mut child = dockerd
        .spawn()
        .context("cannot start dockerd (cargo xtask setup installs Debian's docker.io)")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !daemon_answers() {
        if let Some(status) = child.try_wait()? {
            if status.code() == Some(127) {
                bail!("dockerd is not installed (cargo xtask setup installs Debian's docker.io)");
            }
            bail!(
                "dockerd ended ({status}) before answering; see {}",
                log.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "dockerd did not answer `docker info` within 60 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The cargo profile of the images' binaries (Cargo.toml: release without
/// line tables).
pub const PROFILE: &str = "image";

/// Builds tap-hub and tap-worker for [`MUSL`] with [`PROFILE`] into
/// `target_dir`; the directory holding both binaries.
pub fn build_binaries(root: &Path, target_dir: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // What cargo set for the crate running this (xtask, a test) is not the
    // build's: ring's build script tracks CARGO_MANIFEST_DIR, so inheriting
    // it would rebuild ring and all above it whenever the caller changes.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_for_the_caller) {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--locked", "--profile", PROFILE, "--target", MUSL]);
    for binary in BINARIES {
        cmd.args(["-p", binary]);
    }
    eprintln!(
        "running cargo build --profile {PROFILE} --target {MUSL} -p {} (in {})",
        BINARIES.join(" -p "),
        target_dir.display()
    );
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!(
            "{cmd:?} failed ({status}); the musl target and musl-gcc come with `cargo xtask setup`"
        );
    }
    Ok(target_dir.join(MUSL).join(PROFILE))
}

/// The variables cargo sets for a crate it runs (`cargo run`, `cargo test`).
fn set_for_the_caller(key: &str) -> bool {
    ["CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_"]
        .iter()
        .any(|p| key.starts_with(p))
        || [
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "OUT_DIR",
        ]
        .contains(&key)
}

/// Builds the binaries ([`build_binaries`]) and `docker build`s each image
/// `registry/<binary>:tag` from its Dockerfile, with a context holding the
/// binary alone (a temporary directory, removed after).
pub fn build(root: &Path, target_dir: &Path, registry: &str, tag: &str) -> Result<Vec<Image>> {
    let binaries = build_binaries(root, target_dir)?;
    let mut images = Vec::new();
    for binary in BINARIES {
        let reference = format!("{registry}/{binary}:{tag}");
        let dockerfile = root.join(format!("deploy/docker/{binary}.Dockerfile"));
        docker_build(&dockerfile, &binaries.join(binary), &reference)?;
        images.push(Image {
            binary,
            size: size(&reference)?,
            reference,
        });
    }
    Ok(images)
}

/// `docker build -t reference -f dockerfile` with a context of `file`
/// alone (under its own name).
pub fn docker_build(dockerfile: &Path, file: &Path, reference: &str) -> Result<()> {
    let context = crate::TempDir::new("image-context");
    let name = file
        .file_name()
        .with_context(|| format!("{} names no file", file.display()))?;
    std::fs::copy(file, context.join(name))
        .with_context(|| format!("cannot copy {} into the build context", file.display()))?;
    let out = Command::new("docker")
        .args(["build", "--quiet", "--tag", reference, "--file"])
        .arg(dockerfile)
        .arg(context.root())
        .output()
        .context("cannot run docker (cargo xtask setup installs Debian's docker.io)")?;
    if !out.status.success() {
        bail!(
            "docker build of {reference} from {} failed ({}): {}",
            dockerfile.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The size of image `reference` in bytes, as `docker image inspect` says.
pub fn size(reference: &str) -> Result<u64> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Size}}", reference])
        .output()
        .context("cannot run docker")?;
    if !out.status.success() {
        bail!(
            "docker image inspect {reference}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("docker image inspect {reference} gave size {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_charts() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (registry, tag) = chart_defaults(&root).unwrap();
        assert_eq!(registry, "ghcr.io/kubetap");
        assert_eq!(tag, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn image_values_are_read_from_the_image_block_only() {
        let values = "token: \"\"\nimage:\n  # where\n  registry: mirror:5000/kt # a mirror\n  tag: \"v2\"\n\nhub:\n  tag: no\n";
        assert_eq!(
            image_value(values, "registry").as_deref(),
            Some("mirror:5000/kt")
        );
        assert_eq!(image_value(values, "tag").as_deref(), Some("v2"));
        assert_eq!(image_value("hub:\n  tag: no\n", "tag"), None);
    }
}
