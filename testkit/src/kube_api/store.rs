//! The objects, one global resourceVersion counter, and the bounded history
//! of changes that watches replay from a resourceVersion.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::apply::{self, Writer};
use super::resources::{RESOURCES, Resource};
use super::status::Failure;

/// How many changes a watch can resume from; older resourceVersions get 410.
pub const HISTORY: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub resource: &'static Resource,
    pub change: Change,
    pub object: Value,
    /// The object before a modification: a watch with a selector turns a
    /// change in or out of it into ADDED or DELETED, as the real server does.
    pub prev: Option<Value>,
}

/// A new watch's changes kept since its resourceVersion, and the live ones.
pub(crate) type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// (group, plural, namespace or "", name).
type Key = (&'static str, &'static str, String, String);

fn key(r: &Resource, namespace: &str, name: &str) -> Key {
    (r.group, r.plural, namespace.to_string(), name.to_string())
}

pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    /// The newest resourceVersion dropped from the history.
    compacted: u64,
    events: broadcast::Sender<Arc<Event>>,
}

/// Now, as metav1.Time writes it.
pub(crate) fn now() -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix_now())
        .expect("the clock is within jiff's range")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Seconds since 1970 (jiff's own clock needs its `std` feature).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn uid() -> String {
    let n = fastrand::u128(..);
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn name_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/name").and_then(Value::as_str)
}

impl Store {
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(HISTORY);
        let mut store = Store {
            rv: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            events,
        };
        let ns = super::resources::lookup("namespaces", None).expect("namespaces are served");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            store
                .create(ns, "", obj, None, false)
                .expect("the first namespaces are new");
        }
        store
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, r: &Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(r, namespace, name))
    }

    /// Objects of a kind, in one namespace or (`None`) all, by namespace and name.
    pub fn list<'a>(
        &'a self,
        r: &'a Resource,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |((g, p, ns, _), _)| {
                *g == r.group && *p == r.plural && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, v)| v)
    }

    fn namespace_exists(&self, r: &Resource, namespace: &str) -> Result<(), Failure> {
        if !r.namespaced {
            return Ok(());
        }
        let ns = super::resources::lookup("namespaces", None).expect("namespaces are served");
        match self.get(ns, "", namespace) {
            Some(_) => Ok(()),
            None => Err(Failure::not_found(ns, namespace)),
        }
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn publish(&mut self, event: Event) {
        let event = Arc::new(event);
        if self.history.len() == HISTORY
            && let Some(old) = self.history.pop_front()
        {
            self.compacted = old.rv;
        }
        self.history.push_back(event.clone());
        // No watcher is no error.
        let _ = self.events.send(event);
    }

    /// A new watch of every change after `from` (`None`: from now): the
    /// changes kept since then and the live ones after them, without a gap.
    pub fn subscribe(&self, from: Option<u64>) -> Result<Subscription, Failure> {
        let rx = self.events.subscribe();
        let Some(from) = from else {
            return Ok((Vec::new(), rx));
        };
        if from < self.compacted {
            return Err(Failure::expired(from, self.compacted + 1));
        }
        let kept = self
            .history
            .iter()
            .filter(|e| e.rv > from)
            .cloned()
            .collect();
        Ok((kept, rx))
    }

    /// Stores a new object. `manager`: the API's create by that field
    /// manager (status reset as the real server does, managedFields
    /// recorded); `None` keeps status and managedFields as given (the test's
    /// helpers, server-side apply). `dry_run`: the object, not stored.
    pub fn create(
        &mut self,
        r: &'static Resource,
        namespace: &str,
        mut object: Value,
        manager: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, Failure> {
        if !object.is_object() {
            return Err(Failure::bad_request("the body is not a JSON object"));
        }
        let meta = object
            .as_object_mut()
            .expect("checked above")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            return Err(Failure::bad_request("metadata is not an object"));
        }
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) => {
                    let suffix: String = (0..5)
                        .map(|_| {
                            fastrand::choice(b"bcdfghjklmnpqrstvwxz2456789")
                                .map_or('x', |c| *c as char)
                        })
                        .collect();
                    meta["name"] = format!("{prefix}{suffix}").into();
                }
                None => {
                    return Err(Failure::invalid(
                        r,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            }
        }
        let name = name_of(&object).expect("set above").to_string();
        if r.namespaced {
            object["metadata"]["namespace"] = namespace.into();
        } else if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("namespace");
        }
        self.namespace_exists(r, namespace)?;
        if self.get(r, namespace, &name).is_some() {
            return Err(Failure::already_exists(r, &name));
        }
        let now = now();
        object["apiVersion"] = r.api_version().into();
        object["kind"] = r.kind.into();
        let meta = &mut object["metadata"];
        meta["uid"] = uid().into();
        meta["creationTimestamp"] = now.clone().into();
        if r.generation {
            meta["generation"] = 1.into();
        }
        if let Some(meta) = meta.as_object_mut() {
            meta.remove("deletionTimestamp");
        }
        defaults(r, &mut object, manager.is_some());
        if let Some(manager) = manager {
            let mut managed = Vec::new();
            let fields = apply::fields(&object);
            let writer = Writer {
                manager,
                operation: "Update",
                subresource: None,
                api_version: &r.api_version(),
                now: &now,
            };
            apply::record(&mut managed, &writer, fields, &Default::default());
            apply::write_managed(&mut object, &managed);
        }
        if dry_run {
            return Ok(object);
        }
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.objects
            .insert(key(r, namespace, &name), object.clone());
        self.publish(Event {
            rv,
            resource: r,
            change: Change::Added,
            object: object.clone(),
            prev: None,
        });
        Ok(object)
    }

    /// Replaces a stored object with `object` as it is: a new
    /// resourceVersion, generation bumped on a new spec, a MODIFIED event.
    /// The server's own metadata comes from the stored one.
    pub fn commit(
        &mut self,
        r: &'static Resource,
        namespace: &str,
        name: &str,
        mut object: Value,
        dry_run: bool,
    ) -> Result<Value, Failure> {
        let Some(old) = self.get(r, namespace, name).cloned() else {
            return Err(Failure::not_found(r, name));
        };
        if !object.is_object() || !object["metadata"].is_object() {
            return Err(Failure::bad_request("the object has no metadata"));
        }
        if name_of(&object).is_some_and(|n| n != name) {
            return Err(Failure::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&object).unwrap_or_default()
            )));
        }
        object["apiVersion"] = r.api_version().into();
        object["kind"] = r.kind.into();
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(v) => object["metadata"][field] = v.clone(),
                None => {
                    if let Some(meta) = object["metadata"].as_object_mut() {
                        meta.remove(field);
                    }
                }
            }
        }
        if r.generation && old.get("spec") != object.get("spec") {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            object["metadata"]["generation"] = (generation + 1).into();
        }
        if dry_run {
            return Ok(object);
        }
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.objects.insert(key(r, namespace, name), object.clone());
        self.publish(Event {
            rv,
            resource: r,
            change: Change::Modified,
            object: object.clone(),
            prev: Some(old),
        });
        Ok(object)
    }

    /// Deletes an object (a namespace with everything in it), at once: the
    /// object as it was last, with the deletion's resourceVersion.
    pub fn delete(
        &mut self,
        r: &'static Resource,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, Failure> {
        let Some(found) = self.get(r, namespace, name) else {
            return Err(Failure::not_found(r, name));
        };
        if dry_run {
            return Ok(found.clone());
        }
        if r.plural == "namespaces" && r.group.is_empty() {
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|(g, p, ns, _)| {
                    ns == name
                        && RESOURCES
                            .iter()
                            .any(|x| x.group == *g && x.plural == *p && x.namespaced)
                })
                .cloned()
                .collect();
            for (g, p, ns, n) in inside {
                let inner = RESOURCES
                    .iter()
                    .find(|x| x.group == g && x.plural == p)
                    .expect("stored kinds are served");
                self.delete(inner, &ns, &n, false)?;
            }
        }
        let mut object = self
            .objects
            .remove(&key(r, namespace, name))
            .expect("found above");
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = rv.to_string().into();
        self.publish(Event {
            rv,
            resource: r,
            change: Change::Deleted,
            object: object.clone(),
            prev: None,
        });
        Ok(object)
    }
}

/// What the real server fills in on create. `api`: a client's create, whose
/// status the real server resets on kinds with a status subresource.
fn defaults(r: &Resource, object: &mut Value, api: bool) {
    if api
        && r.has_status()
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    match (r.group, r.plural) {
        ("", "namespaces") => {
            let name = object["metadata"]["name"].clone();
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if object.pointer("/spec/finalizers").is_none() {
                object["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            if object.pointer("/status/phase").is_none() {
                object["status"]["phase"] = "Active".into();
            }
        }
        ("", "pods") if object.pointer("/status/phase").is_none() => {
            object["status"]["phase"] = "Pending".into();
        }
        _ => {}
    }
}
