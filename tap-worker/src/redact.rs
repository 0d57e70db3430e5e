//! The redact stage, in the worker: every entry — from packets
//! (`Pipeline::deliver`) and from TLS plaintext (`tls::source`) — goes
//! through the rules in force (`tap_dissect::redact`) before it is queued,
//! so nothing unredacted leaves the node. The rules are shared by every
//! pipeline and swapped whole when the hub pushes new ones; each pipeline
//! notices at its next entry. What the raw packets of a redacted entry need
//! (`Blanks`) goes to the packet ring (`ring::PacketRing::blank`) right
//! after the packet that completed the entry is kept, so the ring never
//! answers an export with a value the entry hid.

use proto::v1::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tap_dissect::redact::{Blanks, Redactor, Rule, RuleError};

/// What redaction did, over every pipeline and the TLS source.
#[derive(Debug, Default)]
pub struct RedactionCounts {
    /// Entries with at least one value redacted.
    pub entries: AtomicU64,
    /// Fields redacted, as the entries' `redacted` lists name them.
    pub fields: AtomicU64,
}

/// The rules in force, shared; cloning shares them.
#[derive(Debug, Clone)]
pub struct Redaction {
    cell: Arc<RwLock<Arc<Redactor>>>,
    /// Bumped with every new set of rules, so a pipeline checks one atomic
    /// per entry instead of taking the lock.
    version: Arc<AtomicU64>,
    pub counts: Arc<RedactionCounts>,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction::new(Redactor::default())
    }
}

impl Redaction {
    pub fn new(r: Redactor) -> Self {
        Redaction {
            cell: Arc::new(RwLock::new(Arc::new(r))),
            version: Arc::new(AtomicU64::new(0)),
            counts: Arc::default(),
        }
    }

    /// The hub's rules (the defaults always apply besides them); on an
    /// error the rules in force stay.
    pub fn set_rules(&self, rules: &[proto::v1::RedactionRule]) -> Result<(), RuleError> {
        let r = Redactor::new(&rules_of(rules))?;
        self.replace(r);
        Ok(())
    }

    /// Replaces the rules for entries from now on.
    pub fn replace(&self, r: Redactor) {
        *self.cell.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// A per-pipeline handle that follows the shared rules.
    pub fn stage(&self) -> Stage {
        Stage {
            shared: self.clone(),
            current: self.current(),
            seen: self.version.load(Ordering::Acquire),
        }
    }

    fn current(&self) -> Arc<Redactor> {
        self.cell.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The hub's wire rules as the redactor's: an extra key, or a pattern.
pub fn rules_of(rules: &[proto::v1::RedactionRule]) -> Vec<Rule> {
    rules
        .iter()
        .flat_map(|r| {
            let key = (!r.key.is_empty()).then(|| Rule::Key(r.key.clone()));
            let pattern = (!r.pattern.is_empty()).then(|| Rule::Pattern(r.pattern.clone()));
            key.into_iter().chain(pattern)
        })
        .collect()
}

/// A redacted entry's packets to blank, for the packet ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBlank {
    pub flow: u64,
    /// The entry's first packet: the ring looks at this flow's packets from
    /// here on.
    pub from_ns: u64,
    /// The request's sender (the entry's `src`), to tell the two sides
    /// apart.
    pub client: Option<(IpAddr, u16)>,
    pub blanks: Blanks,
}

/// One pipeline's view of the rules.
#[derive(Debug)]
pub struct Stage {
    shared: Redaction,
    current: Arc<Redactor>,
    seen: u64,
}

impl Stage {
    /// Redacts `entry` with the rules in force; the blanks its packets
    /// need, if any, are added to `pending`.
    pub fn apply(&mut self, entry: &mut Entry, pending: &mut Vec<PendingBlank>) {
        let v = self.shared.version.load(Ordering::Acquire);
        if v != self.seen {
            self.current = self.shared.current();
            self.seen = v;
        }
        let before = entry.redacted.len();
        let blanks = self.current.entry(entry);
        let fields = entry.redacted.len().saturating_sub(before);
        if fields > 0 {
            let c = &self.shared.counts;
            c.entries.fetch_add(1, Ordering::Relaxed);
            c.fields.fetch_add(fields as u64, Ordering::Relaxed);
        }
        if !blanks.is_empty() {
            pending.push(PendingBlank {
                flow: entry.flow_id,
                from_ns: entry.ts_ns,
                client: entry
                    .src
                    .as_ref()
                    .and_then(|s| Some((s.ip.parse().ok()?, u16::try_from(s.port).ok()?))),
                blanks,
            });
        }
    }
}
