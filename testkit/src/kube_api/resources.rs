//! The kinds the test API server serves, as the real one describes them in
//! discovery (`/api/v1`, `/apis/<group>/<version>`): plural, kind,
//! namespaced, verbs, short names, the `all` category, subresources.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery,
};

/// Every verb a stored kind answers (the real server's list for them).
const STORED: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One kind.
#[derive(Debug)]
pub(crate) struct Resource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// In the `all` category (what `kubectl get all` lists).
    pub all: bool,
    pub verbs: &'static [&'static str],
    /// Subresources: name, kind, verbs.
    pub subresources: &'static [(&'static str, &'static str, &'static [&'static str])],
    /// Whether `metadata.generation` is kept (bumped when `spec` changes).
    pub generation: bool,
    /// Whether the server keeps no objects of it (SelfSubjectAccessReview).
    pub virtual_only: bool,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether a status subresource exists: writes to the object itself then
    /// leave its status alone, as the real server does.
    pub fn has_status(&self) -> bool {
        self.subresources.iter().any(|(name, ..)| *name == "status")
    }

    /// `daemonsets.apps`, `pods`: how the real server names the resource in
    /// its messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const STATUS: (&str, &str, &[&str]) = ("status", "", &["get", "patch", "update"]);

const fn stored(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    all: bool,
) -> Resource {
    Resource {
        group,
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        all,
        verbs: STORED,
        subresources: &[],
        generation: false,
        virtual_only: false,
    }
}

const fn with_status(mut r: Resource) -> Resource {
    r.subresources = &[STATUS];
    r
}

const fn with_generation(mut r: Resource) -> Resource {
    r.generation = true;
    r
}

/// The table, in discovery's order per group.
pub(crate) static RESOURCES: &[Resource] = &[
    with_status(stored(
        "",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        false,
    )),
    Resource {
        subresources: &[
            ("log", "Pod", &["get"]),
            ("portforward", "PodPortForwardOptions", &["create", "get"]),
            STATUS,
        ],
        ..stored("", "pods", "pod", "Pod", true, &["po"], true)
    },
    with_status(stored("", "nodes", "node", "Node", false, &["no"], false)),
    with_status(stored(
        "",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        true,
    )),
    stored(
        "",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    stored("", "secrets", "secret", "Secret", true, &[], false),
    stored(
        "",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        false,
    ),
    stored("", "events", "event", "Event", true, &["ev"], false),
    stored(
        "",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        false,
    ),
    with_generation(with_status(stored(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        true,
    ))),
    with_generation(with_status(stored(
        "apps",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        true,
    ))),
    with_generation(with_status(stored(
        "apps",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        true,
    ))),
    stored(
        "rbac.authorization.k8s.io",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    stored(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    stored(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        true,
        &[],
        false,
    ),
    stored(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    Resource {
        verbs: &["create"],
        virtual_only: true,
        ..stored(
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            "SelfSubjectAccessReview",
            false,
            &[],
            false,
        )
    },
];

/// The groups under `/apis`, in the real server's order.
const GROUPS: &[&str] = &["apps", "rbac.authorization.k8s.io", "authorization.k8s.io"];

/// The kind served at `group`/`version` under the plural `plural`.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The kind named by a test: its kind (`Pod`), plural (`pods`) or short
/// name, any case; with an `apiVersion`, only in that group.
pub(crate) fn lookup(name: &str, api_version: Option<&str>) -> Option<&'static Resource> {
    let lower = name.to_ascii_lowercase();
    RESOURCES.iter().find(|r| {
        api_version.is_none_or(|v| r.api_version() == v)
            && (r.kind.eq_ignore_ascii_case(name)
                || r.plural == lower
                || r.singular == lower
                || r.short_names.contains(&lower.as_str()))
    })
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<APIResourceList> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(APIResource {
            name: r.plural.into(),
            singular_name: r.singular.into(),
            kind: r.kind.into(),
            namespaced: r.namespaced,
            verbs: strings(r.verbs),
            short_names: (!r.short_names.is_empty()).then(|| strings(r.short_names)),
            categories: r.all.then(|| vec!["all".to_string()]),
            ..Default::default()
        });
        for (sub, kind, verbs) in r.subresources {
            resources.push(APIResource {
                name: format!("{}/{sub}", r.plural),
                singular_name: String::new(),
                kind: if kind.is_empty() { r.kind } else { kind }.to_string(),
                namespaced: r.namespaced,
                verbs: strings(verbs),
                ..Default::default()
            });
        }
    }
    (!resources.is_empty()).then(|| APIResourceList {
        group_version: if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        },
        resources,
    })
}

/// `/apis`.
pub(crate) fn group_list() -> APIGroupList {
    APIGroupList {
        groups: GROUPS
            .iter()
            .map(|g| {
                let v = GroupVersionForDiscovery {
                    group_version: format!("{g}/v1"),
                    version: "v1".into(),
                };
                APIGroup {
                    name: g.to_string(),
                    preferred_version: Some(v.clone()),
                    versions: vec![v],
                    server_address_by_client_cidrs: None,
                }
            })
            .collect(),
    }
}

/// `/apis/<group>`.
pub(crate) fn group(name: &str) -> Option<APIGroup> {
    group_list().groups.into_iter().find(|g| g.name == name)
}
