//! What an entry keeps of a command or reply while it is parsed (capped),
//! the key of each command, and pub/sub: subscriptions, their confirmations
//! and pushed messages.

use super::*;

/// What the entry keeps of a frame, gathered while it is parsed and capped as it goes.
#[derive(Debug)]
pub(super) struct Draft {
    pub(super) role: Role,
    pub(super) max: usize,
    /// The frame's type byte (after any attributes); `i` for an inline command.
    pub(super) kind: Option<u8>,
    pub(super) null: bool,
    /// Elements an aggregate frame announced (pairs for a map); `None` when streamed.
    pub(super) declared: Option<u64>,
    /// Server: the reply rendered as text.
    pub(super) value: Vec<u8>,
    pub(super) error: Vec<u8>,
    /// Bytes or elements were not kept (cap, or bytes the capture lost).
    pub(super) cut: bool,
    /// Elements at depth 1 with their type byte: the command and its
    /// arguments, or the first elements of a reply (for pub/sub).
    pub(super) items: Vec<(u8, Vec<u8>)>,
    pub(super) items_seen: u64,
    pub(super) items_bytes: usize,
    /// Bytes of the current element go into the last item.
    pub(super) collecting: bool,
    /// Inside an attribute (nothing is kept).
    pub(super) attr: u32,
    /// Bytes still to skip at the start of a verbatim string: its `txt:` format.
    pub(super) skip: u8,
}

impl Draft {
    pub(super) fn new(role: Role, max: usize) -> Self {
        Draft {
            role,
            max,
            kind: None,
            null: false,
            declared: None,
            value: Vec::new(),
            error: Vec::new(),
            cut: false,
            items: Vec::new(),
            items_seen: 0,
            items_bytes: 0,
            collecting: false,
            attr: 0,
            skip: 0,
        }
    }

    pub(super) fn element(&mut self, t: u8, depth: usize, parent: Option<(Agg, u64)>) {
        if self.attr > 0 {
            return;
        }
        self.collecting = false;
        if depth == 0 {
            self.kind = Some(t);
            return;
        }
        if let Some((agg, i)) = parent
            && i > 0
        {
            let sep: &[u8] = if agg == Agg::Map && i % 2 == 1 {
                b": "
            } else {
                b", "
            };
            self.render(sep);
        }
        if depth == 1 {
            self.items_seen += 1;
            let most = match self.role {
                Role::Client => MAX_ARGS + 1,
                Role::Server => PUBSUB_ITEMS,
            };
            let full =
                self.role == Role::Client && self.items.len() > 1 && self.items_bytes >= self.max;
            if self.items.len() < most && !full {
                self.items.push((t, Vec::new()));
                self.collecting = true;
            } else if self.role == Role::Client {
                self.cut = true;
            }
        }
    }

    /// Bytes of the current depth-1 element.
    pub(super) fn collect(&mut self, b: &[u8]) {
        if !self.collecting || self.attr > 0 {
            return;
        }
        // The cap is for arguments; a command's name has a small one of its own.
        let name = self.role == Role::Client && self.items.len() == 1;
        let Some((_, item)) = self.items.last_mut() else {
            return;
        };
        let room = match self.role {
            Role::Client if name => MAX_COMMAND.saturating_sub(item.len()),
            Role::Client => self
                .max
                .saturating_sub(item.len())
                .min(self.max.saturating_sub(self.items_bytes)),
            Role::Server => PUBSUB_ITEM.saturating_sub(item.len()),
        };
        if b.len() > room && self.role == Role::Client && !name {
            self.cut = true;
        }
        let n = b.len().min(room);
        item.extend_from_slice(&b[..n]);
        if !name {
            self.items_bytes += n;
        }
    }

    pub(super) fn render(&mut self, b: &[u8]) {
        if self.role == Role::Client || self.attr > 0 {
            return;
        }
        let room = self.max.saturating_sub(self.value.len());
        if b.len() > room {
            self.cut = true;
        }
        self.value.extend_from_slice(&b[..b.len().min(room)]);
    }

    /// Bytes inside a quoted string, escaped as redis-cli shows them.
    pub(super) fn render_escaped(&mut self, b: &[u8]) {
        if self.role == Role::Client || self.attr > 0 {
            return;
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &c in b {
            let hex;
            let esc: &[u8] = match c {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0x20..=0x7e => std::slice::from_ref(&c),
                _ => {
                    hex = [
                        b'\\',
                        b'x',
                        HEX[usize::from(c >> 4)],
                        HEX[usize::from(c & 15)],
                    ];
                    &hex
                }
            };
            if self.value.len() + esc.len() > self.max {
                self.cut = true;
                return;
            }
            self.value.extend_from_slice(esc);
        }
    }

    pub(super) fn error_text(&mut self, b: &[u8]) {
        let room = self.max.saturating_sub(self.error.len());
        if b.len() > room {
            self.cut = true;
        }
        self.error.extend_from_slice(&b[..b.len().min(room)]);
    }

    pub(super) fn scalar(&mut self, depth: usize, t: u8, text: &[u8]) {
        if self.attr > 0 {
            return;
        }
        let boolean: &[u8] = if text == b"t" { b"true" } else { b"false" };
        if depth == 0 {
            match t {
                b'-' => self.error_text(text),
                b'#' => self.render(boolean),
                b'_' => self.null = true,
                _ => self.render(text),
            }
            return;
        }
        if depth == 1 {
            self.collect(text);
        }
        match t {
            b'+' => {
                self.render(b"\"");
                self.render_escaped(text);
                self.render(b"\"");
            }
            b'-' => {
                self.render(b"error(\"");
                self.render_escaped(text);
                self.render(b"\")");
            }
            b'#' => self.render(boolean),
            b'_' => self.render(b"null"),
            _ => self.render(text),
        }
    }

    pub(super) fn null(&mut self, depth: usize) {
        if self.attr > 0 {
            return;
        }
        if depth == 0 {
            self.null = true;
        } else {
            self.render(b"null");
        }
    }

    pub(super) fn payload_begin(&mut self, depth: usize, t: u8) {
        if self.attr > 0 {
            return;
        }
        self.skip = if t == b'=' { 4 } else { 0 };
        if depth > 0 {
            self.render(if t == b'!' { b"error(\"" } else { b"\"" });
        }
    }

    pub(super) fn payload(&mut self, depth: usize, data: &[u8]) {
        if self.attr > 0 {
            return;
        }
        let skip = usize::from(self.skip).min(data.len());
        self.skip -= skip as u8;
        let data = &data[skip..];
        if depth == 0 {
            if self.kind == Some(b'!') {
                self.error_text(data);
            } else {
                self.render(data);
            }
            return;
        }
        if depth == 1 {
            self.collect(data);
        }
        self.render_escaped(data);
    }

    pub(super) fn payload_end(&mut self, depth: usize, t: u8) {
        if self.attr > 0 || depth == 0 {
            return;
        }
        self.render(if t == b'!' { b"\")" } else { b"\"" });
    }

    pub(super) fn open(&mut self, depth: usize, agg: Agg, declared: Option<u64>) {
        if self.attr > 0 {
            return;
        }
        if depth == 0 {
            self.declared = declared;
        }
        self.render(if matches!(agg, Agg::Map | Agg::Set) {
            b"{"
        } else {
            b"["
        });
    }

    pub(super) fn close(&mut self, _depth: usize, agg: Agg) {
        if self.attr > 0 {
            return;
        }
        self.render(if matches!(agg, Agg::Map | Agg::Set) {
            b"}"
        } else {
            b"]"
        });
    }

    pub(super) fn into_request(self) -> (RedisRequest, bool) {
        let mut items = self.items.into_iter().map(|(_, b)| b);
        let name = items.next().unwrap_or_default();
        let mut command = upper(&name[..name.len().min(MAX_COMMAND)]);
        let mut args: Vec<Vec<u8>> = items.collect();
        let mut arg_count = self.items_seen.saturating_sub(1);
        if CONTAINERS.contains(&command.as_str())
            && let Some(sub) = args.first()
            && !sub.is_empty()
            && sub.len() <= 32
            && sub.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            command = format!("{command} {}", upper(sub));
            args.remove(0);
            arg_count -= 1;
        }
        let key = key_of(&command, &args)
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let req = RedisRequest {
            command,
            key,
            args,
            arg_count,
            args_truncated: self.cut,
            inline: self.kind == Some(b'i'),
        };
        (req, self.cut)
    }

    pub(super) fn into_reply(self) -> Reply {
        let t = self.kind;
        let name = match t {
            Some(b'+') => "simple",
            Some(b'-') => "error",
            Some(b':') => "integer",
            Some(b'$') | Some(b'*') if self.null => "null",
            Some(b'$') => "bulk",
            Some(b'*') => "array",
            Some(b'_') => "null",
            Some(b',') => "double",
            Some(b'#') => "boolean",
            Some(b'(') => "big_number",
            Some(b'!') => "bulk_error",
            Some(b'=') => "verbatim",
            Some(b'%') => "map",
            Some(b'~') => "set",
            Some(b'>') => "push",
            _ => "",
        };
        let elements = match t {
            Some(b'%') => self.declared.unwrap_or(self.items_seen / 2),
            Some(b'*' | b'~' | b'>') => self.declared.unwrap_or(self.items_seen),
            _ => 0,
        };
        let is_error = matches!(t, Some(b'-' | b'!'));
        Reply {
            resp: RedisResponse {
                r#type: name.to_string(),
                value: self.value,
                value_truncated: self.cut,
                error: String::from_utf8_lossy(&self.error).into_owned(),
                is_error,
                elements,
            },
            kind: t,
            items: self.items,
        }
    }
}

pub(super) fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

/// The argument holding a command's first key, after its name's words.
pub(super) fn key_of<'a>(command: &str, args: &'a [Vec<u8>]) -> Option<&'a [u8]> {
    let numkeys =
        |i: usize| -> Option<u64> { std::str::from_utf8(args.get(i)?).ok()?.parse().ok() };
    let at = match command {
        c if KEYLESS.contains(&c) => return None,
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => {
            (numkeys(1)? > 0).then_some(2)?
        }
        "ZUNION" | "ZINTER" | "ZDIFF" | "SINTERCARD" | "ZINTERCARD" | "LMPOP" | "ZMPOP" => {
            (numkeys(0)? > 0).then_some(1)?
        }
        "BLMPOP" | "BZMPOP" => (numkeys(1)? > 0).then_some(2)?,
        "XREAD" | "XREADGROUP" => {
            args.iter()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))?
                + 1
        }
        "MIGRATE" => 2,
        "OBJECT ENCODING"
        | "OBJECT FREQ"
        | "OBJECT IDLETIME"
        | "OBJECT REFCOUNT"
        | "MEMORY USAGE"
        | "XINFO STREAM"
        | "XINFO GROUPS"
        | "XINFO CONSUMERS"
        | "XGROUP CREATE"
        | "XGROUP SETID"
        | "XGROUP DESTROY"
        | "XGROUP CREATECONSUMER"
        | "XGROUP DELCONSUMER" => 0,
        c if c.contains(' ') => return None,
        _ => 0,
    };
    args.get(at).map(Vec::as_slice).filter(|k| !k.is_empty())
}

/// A parsed reply with what pub/sub recognition needs.
pub(super) struct Reply {
    pub(super) resp: RedisResponse,
    pub(super) kind: Option<u8>,
    pub(super) items: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    /// The first element in lower case, when it is a string.
    pub(super) fn word(&self) -> Option<String> {
        let (t, b) = self.items.first()?;
        matches!(t, b'$' | b'+').then(|| String::from_utf8_lossy(b).to_ascii_lowercase())
    }

    pub(super) fn item_text(&self, i: usize) -> String {
        self.items
            .get(i)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// The subscription count a (un)subscribe confirmation ends with.
    pub(super) fn count(&self) -> Option<u64> {
        match self.items.get(2)? {
            (b':', b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// The confirmation word a (un)subscribe command is answered with.
pub(super) fn confirmation_of(command: &str) -> Option<&'static str> {
    Some(match command {
        "SUBSCRIBE" => "subscribe",
        "UNSUBSCRIBE" => "unsubscribe",
        "PSUBSCRIBE" => "psubscribe",
        "PUNSUBSCRIBE" => "punsubscribe",
        "SSUBSCRIBE" => "ssubscribe",
        "SUNSUBSCRIBE" => "sunsubscribe",
        _ => return None,
    })
}

/// Subscriptions of the connection as the server counted them in its confirmations.
#[derive(Debug, Default)]
pub(super) struct PubSub {
    pub(super) channels: u64,
    pub(super) patterns: u64,
    pub(super) shard: u64,
    /// The confirmations of a (un)subscribe of several channels, until all are in.
    pub(super) group: Option<Group>,
    /// MONITOR was accepted: the server's lines are pushes.
    pub(super) monitor: bool,
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) word: String,
    pub(super) left: u64,
    pub(super) resp: Message<Response>,
}

impl PubSub {
    pub(super) fn subscribed(&self) -> bool {
        self.channels
            .saturating_add(self.patterns)
            .saturating_add(self.shard)
            > 0
    }

    /// Follows the counts a confirmation reports (channels and patterns share
    /// one count; shard channels have their own).
    pub(super) fn track(&mut self, word: &str, count: u64) {
        let total = self.channels.saturating_add(self.patterns);
        let which = match word {
            "subscribe" | "unsubscribe" => &mut self.channels,
            "psubscribe" | "punsubscribe" => &mut self.patterns,
            _ => {
                self.shard = count;
                return;
            }
        };
        if count > total {
            *which += count - total;
        } else {
            *which -= (total - count).min(*which);
        }
    }

    /// How many confirmations answer a (un)subscribe with `args` channels:
    /// one per channel, or per current subscription when it names none.
    pub(super) fn expected(&self, word: &str, args: u64) -> u64 {
        if args > 0 {
            return args;
        }
        match word {
            "unsubscribe" => self.channels,
            "punsubscribe" => self.patterns,
            "sunsubscribe" => self.shard,
            _ => 1,
        }
        .max(1)
    }
}
