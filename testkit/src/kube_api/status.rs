//! Failures as the real server words them: a `metav1.Status` with code,
//! reason, message and details, the body of every error answer.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};

use super::resources::Resource;

/// Why a request failed: what the test API server answers and what the
/// test-side helpers ([`super::ApiServer::create`], …) return.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The HTTP status.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Forbidden`, … (metav1.StatusReason).
    pub reason: &'static str,
    pub message: String,
    /// `details`, if about an object.
    pub details: Option<Box<Details>>,
}

/// A Status's `details`: the object's name, group and kind (the plural);
/// empty ones are left out, as the real server does.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn about(mut self, resource: &Resource, name: &str) -> Failure {
        self.details = Some(Box::new(Details {
            name: name.into(),
            group: resource.group.into(),
            kind: resource.plural.into(),
        }));
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(400, "BadRequest", message)
    }

    pub(crate) fn not_found(resource: &Resource, name: &str) -> Failure {
        Failure::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
        )
        .about(resource, name)
    }

    /// A path that names no resource (`the server could not find the requested resource`).
    pub(crate) fn no_route() -> Failure {
        Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub(crate) fn already_exists(resource: &Resource, name: &str) -> Failure {
        Failure::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
        )
        .about(resource, name)
    }

    pub(crate) fn conflict(resource: &Resource, name: &str, why: &str) -> Failure {
        Failure::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                resource.qualified()
            ),
        )
        .about(resource, name)
    }

    pub(crate) fn invalid(resource: &Resource, name: &str, why: &str) -> Failure {
        Failure::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {why}", resource.kind),
        )
        .about(resource, name)
    }

    pub(crate) fn method_not_allowed(method: &str) -> Failure {
        Failure::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub(crate) fn unauthorized() -> Failure {
        Failure::new(401, "Unauthorized", "Unauthorized")
    }

    /// A watch from a resourceVersion older than the kept history.
    pub(crate) fn expired(asked: u64, oldest: u64) -> Failure {
        Failure::new(
            410,
            "Expired",
            format!("too old resource version: {asked} ({oldest})"),
        )
    }

    pub(crate) fn too_large(limit: usize) -> Failure {
        Failure::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Failure {
        Failure::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/apply-patch+yaml, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// As `metav1.Status` JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let given = |s: &String| (!s.is_empty()).then(|| s.clone());
        let details = self.details.as_ref().map(|d| StatusDetails {
            name: given(&d.name),
            group: given(&d.group),
            kind: given(&d.kind),
            ..Default::default()
        });
        let status = Status {
            code: Some(self.code.into()),
            reason: Some(self.reason.into()),
            message: Some(self.message.clone()),
            status: Some("Failure".into()),
            details,
            metadata: Default::default(),
        };
        serde_json::to_value(status).expect("a Status serializes")
    }
}
