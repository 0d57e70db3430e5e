//! Decoding frames: a bounded reader over a payload, methods with their
//! arguments, field tables, and content headers with their properties.

use super::*;

/// A cursor over a method or header frame's payload; `None` when it ends too soon.
pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) i: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(s)
    }
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(super) fn shortstr(&mut self) -> Option<String> {
        let n = self.u8()? as usize;
        Some(text(self.take(n)?))
    }
    pub(super) fn longstr(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A field table, its entries appended to `out` as `prefix` + name.
    pub(super) fn table(&mut self, prefix: &str, out: &mut Vec<Header>) -> Option<()> {
        let body = self.longstr()?;
        let mut t = Reader { b: body, i: 0 };
        while t.i < body.len() {
            let name = t.shortstr()?;
            let value = t.value()?;
            if out.len() < MAX_TABLE {
                out.push(header(format!("{prefix}{name}"), value));
            }
        }
        Some(())
    }
    /// One field value (RabbitMQ's type letters), as text.
    pub(super) fn value(&mut self) -> Option<String> {
        Some(match self.u8()? {
            b't' => (self.u8()? != 0).to_string(),
            b'b' => (self.u8()? as i8).to_string(),
            b'B' => self.u8()?.to_string(),
            b's' => (self.u16()? as i16).to_string(),
            b'u' => self.u16()?.to_string(),
            b'I' => (self.u32()? as i32).to_string(),
            b'i' => self.u32()?.to_string(),
            b'l' => (self.u64()? as i64).to_string(),
            b'T' => self.u64()?.to_string(),
            b'f' => f32::from_bits(self.u32()?).to_string(),
            b'd' => f64::from_bits(self.u64()?).to_string(),
            b'D' => {
                let scale = self.u8()?;
                let v = self.u32()?;
                format!("{v}e-{scale}")
            }
            b'S' | b'x' => text(self.longstr()?),
            b'A' => {
                self.longstr()?;
                "(array)".into()
            }
            b'F' => {
                self.longstr()?;
                "(table)".into()
            }
            b'V' => String::new(),
            _ => return None,
        })
    }
}

/// Text of at most [`MAX_VALUE`] bytes, invalid UTF-8 replaced.
pub(super) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_VALUE)]).into_owned()
}

pub(super) fn header(name: impl Into<String>, value: impl Into<String>) -> Header {
    Header {
        name: name.into(),
        value: value.into(),
    }
}

/// A decoded method frame.
#[derive(Debug)]
pub(super) struct Decoded {
    pub(super) class: u16,
    pub(super) method: u16,
    pub(super) kind: Kind,
    pub(super) no_wait: bool,
    pub(super) body: AmqpMethod,
}

/// Decodes a method frame's payload; `Err` when its arguments do not fit it.
pub(super) fn decode_method(channel: u16, payload: &[u8]) -> Result<Decoded, &'static str> {
    let mut r = Reader { b: payload, i: 0 };
    let class = r.u16().ok_or("short method frame")?;
    let method = r.u16().ok_or("short method frame")?;
    let (name, kind) = lookup(class, method).ok_or("unknown method")?;
    let mut m = AmqpMethod {
        channel: u32::from(channel),
        class: class_name(class).unwrap_or_default().to_string(),
        method: name.to_string(),
        ..Default::default()
    };
    let no_wait = arguments(class, method, &mut r, &mut m).ok_or("method arguments cut short")?;
    m.path = if !m.queue.is_empty() && (class == 50 || matches!((class, method), (60, 20 | 70))) {
        m.queue.clone()
    } else if !m.exchange.is_empty() || !m.routing_key.is_empty() {
        format!("{}/{}", m.exchange, m.routing_key)
    } else {
        m.queue.clone()
    };
    Ok(Decoded {
        class,
        method,
        kind,
        no_wait,
        body: m,
    })
}

/// Reads the arguments the entry shows; returns the no-wait bit.
pub(super) fn arguments(
    class: u16,
    method: u16,
    r: &mut Reader,
    m: &mut AmqpMethod,
) -> Option<bool> {
    let args = &mut m.arguments;
    let flag = |args: &mut Vec<Header>, bits: u8, i: u8, name: &str| {
        args.push(header(name, (bits >> i & 1 == 1).to_string()));
    };
    let mut no_wait = false;
    match (class, method) {
        (10, 10) => {
            let (major, minor) = (r.u8()?, r.u8()?);
            args.push(header("version", format!("{major}-{minor}")));
            r.table("server_properties.", args)?;
            args.push(header("mechanisms", text(r.longstr()?)));
            args.push(header("locales", text(r.longstr()?)));
        }
        (10, 11) => {
            r.table("client_properties.", args)?;
            args.push(header("mechanism", r.shortstr()?));
            // The response holds the credentials: skipped, never kept.
            r.longstr()?;
            args.push(header("locale", r.shortstr()?));
        }
        (10, 30) | (10, 31) => {
            args.push(header("channel_max", r.u16()?.to_string()));
            args.push(header("frame_max", r.u32()?.to_string()));
            args.push(header("heartbeat", r.u16()?.to_string()));
        }
        (10, 40) => args.push(header("virtual_host", r.shortstr()?)),
        (10, 50) | (20, 40) => {
            m.reply_code = u32::from(r.u16()?);
            m.reply_text = r.shortstr()?;
            let (c, i) = (r.u16()?, r.u16()?);
            if let Some((name, _)) = lookup(c, i) {
                m.arguments.push(header("failing_method", name));
            }
        }
        (10, 60) => args.push(header("reason", r.shortstr()?)),
        (20, 20) | (20, 21) => flag(args, r.u8()?, 0, "active"),
        (40, 10) => {
            r.u16()?;
            m.exchange = r.shortstr()?;
            args.push(header("type", r.shortstr()?));
            let bits = r.u8()?;
            for (i, name) in ["passive", "durable", "auto_delete", "internal"]
                .iter()
                .enumerate()
            {
                flag(args, bits, i as u8, name);
            }
            no_wait = bits >> 4 & 1 == 1;
            r.table("arguments.", args)?;
        }
        (40, 20) => {
            r.u16()?;
            m.exchange = r.shortstr()?;
            let bits = r.u8()?;
            flag(args, bits, 0, "if_unused");
            no_wait = bits >> 1 & 1 == 1;
        }
        (40, 30) | (40, 40) => {
            r.u16()?;
            args.push(header("destination", r.shortstr()?));
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
            no_wait = r.u8()? & 1 == 1;
        }
        (50, 10) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            let bits = r.u8()?;
            for (i, name) in ["passive", "durable", "exclusive", "auto_delete"]
                .iter()
                .enumerate()
            {
                flag(args, bits, i as u8, name);
            }
            no_wait = bits >> 4 & 1 == 1;
            r.table("arguments.", args)?;
        }
        (50, 11) => {
            m.queue = r.shortstr()?;
            args.push(header("message_count", r.u32()?.to_string()));
            args.push(header("consumer_count", r.u32()?.to_string()));
        }
        (50, 20) | (50, 50) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
            if method == 20 {
                no_wait = r.u8()? & 1 == 1;
            }
        }
        (50, 30) | (50, 40) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            let bits = r.u8()?;
            if method == 40 {
                flag(args, bits, 0, "if_unused");
                flag(args, bits, 1, "if_empty");
                no_wait = bits >> 2 & 1 == 1;
            } else {
                no_wait = bits & 1 == 1;
            }
        }
        (50, 31) | (50, 41) => args.push(header("message_count", r.u32()?.to_string())),
        (60, 10) => {
            args.push(header("prefetch_size", r.u32()?.to_string()));
            args.push(header("prefetch_count", r.u16()?.to_string()));
            flag(args, r.u8()?, 0, "global");
        }
        (60, 20) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            m.consumer_tag = r.shortstr()?;
            let bits = r.u8()?;
            for (i, name) in ["no_local", "no_ack", "exclusive"].iter().enumerate() {
                flag(args, bits, i as u8, name);
            }
            no_wait = bits >> 3 & 1 == 1;
            r.table("arguments.", args)?;
        }
        (60, 21) | (60, 31) => m.consumer_tag = r.shortstr()?,
        (60, 30) => {
            m.consumer_tag = r.shortstr()?;
            no_wait = r.u8()? & 1 == 1;
        }
        (60, 40) => {
            r.u16()?;
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
            let bits = r.u8()?;
            flag(args, bits, 0, "mandatory");
            flag(args, bits, 1, "immediate");
        }
        (60, 50) => {
            m.reply_code = u32::from(r.u16()?);
            m.reply_text = r.shortstr()?;
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
        }
        (60, 60) => {
            m.consumer_tag = r.shortstr()?;
            m.delivery_tag = r.u64()?;
            flag(args, r.u8()?, 0, "redelivered");
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
        }
        (60, 70) => {
            r.u16()?;
            m.queue = r.shortstr()?;
            flag(args, r.u8()?, 0, "no_ack");
        }
        (60, 71) => {
            m.delivery_tag = r.u64()?;
            flag(args, r.u8()?, 0, "redelivered");
            m.exchange = r.shortstr()?;
            m.routing_key = r.shortstr()?;
            args.push(header("message_count", r.u32()?.to_string()));
        }
        (60, 80) | (60, 90) | (60, 120) => {
            m.delivery_tag = r.u64()?;
            let bits = r.u8()?;
            match method {
                80 => flag(args, bits, 0, "multiple"),
                90 => flag(args, bits, 0, "requeue"),
                _ => {
                    flag(args, bits, 0, "multiple");
                    flag(args, bits, 1, "requeue");
                }
            }
        }
        (60, 100) | (60, 110) => flag(args, r.u8()?, 0, "requeue"),
        (85, 10) => no_wait = r.u8()? & 1 == 1,
        _ => {}
    }
    Some(no_wait)
}

/// Content properties in flag order (bit 15 first) and whether each is a short string.
pub(super) const PROPERTIES: &[&str] = &[
    "content-type",
    "content-encoding",
    "headers",
    "delivery-mode",
    "priority",
    "correlation-id",
    "reply-to",
    "expiration",
    "message-id",
    "timestamp",
    "type",
    "user-id",
    "app-id",
    "cluster-id",
];

/// A content header frame: the body's size and the properties.
pub(super) fn decode_content_header(payload: &[u8], out: &mut Vec<Header>) -> Option<u64> {
    let mut r = Reader { b: payload, i: 0 };
    r.u16()?;
    r.u16()?;
    let size = r.u64()?;
    let flags = r.u16()?;
    for (i, name) in PROPERTIES.iter().enumerate() {
        if flags >> (15 - i) & 1 == 0 {
            continue;
        }
        let value = match *name {
            "headers" => {
                r.table("headers.", out)?;
                continue;
            }
            "delivery-mode" | "priority" => r.u8()?.to_string(),
            "timestamp" => r.u64()?.to_string(),
            _ => r.shortstr()?,
        };
        out.push(header(*name, value));
    }
    Some(size)
}
