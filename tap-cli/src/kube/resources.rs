//! The kinds of object kubetap installs, and a client for each.

use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;

/// A kind kubetap installs: where its API is and whether it lives in a
/// namespace.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// Every kind in the chart, in the order they are applied (cleaned in the
/// reverse order).
pub const KINDS: &[Kind] = &[
    Kind {
        kind: "Namespace",
        group: "",
        version: "v1",
        plural: "namespaces",
        namespaced: false,
    },
    Kind {
        kind: "ServiceAccount",
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        namespaced: true,
    },
    Kind {
        kind: "ClusterRole",
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        namespaced: false,
    },
    Kind {
        kind: "ClusterRoleBinding",
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        namespaced: false,
    },
    Kind {
        kind: "Secret",
        group: "",
        version: "v1",
        plural: "secrets",
        namespaced: true,
    },
    Kind {
        kind: "Service",
        group: "",
        version: "v1",
        plural: "services",
        namespaced: true,
    },
    Kind {
        kind: "Deployment",
        group: "apps",
        version: "v1",
        plural: "deployments",
        namespaced: true,
    },
    Kind {
        kind: "DaemonSet",
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        namespaced: true,
    },
];

/// The label on every object kubetap installs.
pub const PART_OF: &str = "app.kubernetes.io/part-of=kubetap";

impl Kind {
    pub fn named(kind: &str) -> Option<&'static Kind> {
        KINDS.iter().find(|k| k.kind == kind)
    }

    /// A client for this kind's objects (in `namespace` if namespaced).
    pub fn api(&self, client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(self.group, self.version, self.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, self.plural);
        if self.namespaced {
            Api::namespaced_with(client.clone(), namespace, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        }
    }

    /// `deployments.apps`, as kubectl and the API server's messages name it.
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Whether an object carries kubetap's label (kubetap made it).
pub fn is_kubetaps(meta: &kube::api::ObjectMeta) -> bool {
    let (key, value) = PART_OF.split_once('=').expect("PART_OF is key=value");
    meta.labels
        .as_ref()
        .and_then(|l| l.get(key))
        .is_some_and(|v| v == value)
}
