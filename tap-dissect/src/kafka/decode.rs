//! Decoding requests and responses: headers for every API, bodies for the
//! APIs read here (topics, partitions, error codes, record counts), through
//! a bounded reader that allocates nothing from wire lengths.

use super::*;

/// Decodes a request's header and, for the APIs read here, its body; `None`
/// when the header itself does not parse. Returns the API key and version too.
pub(super) fn decode_request(b: &[u8], len: u64) -> Option<(i16, i16, KafkaRequest)> {
    let mut r = Reader::new(b, false);
    let key = r.i16()?;
    let version = r.i16()?;
    let correlation_id = r.i32()?;
    let api = ApiKey::try_from(key).ok();
    let header_version = api.map_or(1, |a| a.request_header_version(version));
    let client_id = if header_version >= 1 {
        r.nullable_string()?.unwrap_or_default()
    } else {
        String::new()
    };
    if header_version >= 2 {
        r.flexible = true;
        r.tagged()?;
    }
    let body_size = len.saturating_sub(r.pos as u64);
    let mut req = KafkaRequest {
        api_key: u32::from(key as u16),
        api_name: api_name(api),
        api_version: u32::from(version as u16),
        correlation_id,
        client_id: clip(client_id),
        body_size,
        ..Default::default()
    };
    if let Some(api) = api {
        let mut body = r.clone();
        body.flexible = header_version >= 2;
        let mut d = Decoded::default();
        if request_body(api, version, &mut body, &mut d).is_some() {
            req.body_decoded = true;
        }
        req.topics = d.topics;
        req.group_id = clip(d.group_id);
    }
    Some((key, version, req))
}

/// Decodes a response with the API and version of its request, when known.
pub(super) fn decode_response(b: &[u8], len: u64, api: Option<(i16, i16)>) -> KafkaResponse {
    let mut r = Reader::new(b, false);
    let correlation_id = r.i32().unwrap_or_default();
    let mut resp = KafkaResponse {
        correlation_id,
        ..Default::default()
    };
    let Some((key, version)) = api else {
        resp.api_name = api_name(None);
        resp.body_size = len.saturating_sub(4);
        return resp;
    };
    let api = ApiKey::try_from(key).ok();
    resp.api_key = u32::from(key as u16);
    resp.api_name = api_name(api);
    let Some(api) = api else {
        resp.body_size = len.saturating_sub(4);
        return resp;
    };
    let flexible = api.request_header_version(version) >= 2;
    if api.response_header_version(version) >= 1 && r.with_flexible(true).tagged().is_none() {
        return resp;
    }
    resp.body_size = len.saturating_sub(r.pos as u64);
    r.flexible = flexible;
    let mut d = Decoded::default();
    resp.body_decoded = response_body(api, version, &mut r, &mut d).is_some();
    resp.error_code = if d.error != 0 {
        d.error
    } else {
        d.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .find(|&e| e != 0)
            .unwrap_or(d.first_topic_error)
    };
    resp.topics = d.topics;
    resp
}

pub(super) fn api_name(api: Option<ApiKey>) -> String {
    match api {
        Some(a) => format!("{a:?}"),
        None => "Unknown".to_string(),
    }
}

pub(super) fn clip(mut s: String) -> String {
    if s.len() > MAX_NAME {
        let mut at = MAX_NAME;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// What a body yields.
#[derive(Default)]
pub(super) struct Decoded {
    pub(super) topics: Vec<KafkaTopic>,
    pub(super) group_id: String,
    /// The top-level error code.
    pub(super) error: i32,
    /// The first non-zero error of a topic (Metadata's per-topic errors).
    pub(super) first_topic_error: i32,
}

impl Decoded {
    pub(super) fn topic(&mut self, name: String) -> Option<usize> {
        (self.topics.len() < MAX_TOPICS).then(|| {
            self.topics.push(KafkaTopic {
                name,
                partitions: Vec::new(),
            });
            self.topics.len() - 1
        })
    }

    pub(super) fn partition(&mut self, topic: Option<usize>, p: KafkaPartition) {
        if let Some(t) = topic.and_then(|t| self.topics.get_mut(t))
            && t.partitions.len() < MAX_PARTITIONS
        {
            t.partitions.push(p);
        }
    }

    pub(super) fn set_error(&mut self, code: i16) {
        if self.error == 0 {
            self.error = i32::from(code);
        }
    }
}

/// A topic's name, or (in versions that name topics by id) its id in hex.
pub(super) fn topic_name(r: &mut Reader, by_id: bool) -> Option<String> {
    if by_id {
        let id = r.take(16)?;
        Some(id.iter().map(|b| format!("{b:02x}")).collect())
    } else {
        Some(r.nullable_string()?.unwrap_or_default())
    }
}

pub(super) fn request_body(api: ApiKey, v: i16, r: &mut Reader, d: &mut Decoded) -> Option<()> {
    match api {
        ApiKey::Produce => {
            if v >= 3 {
                r.nullable_string()?;
            }
            r.i16()?;
            r.i32()?;
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 13)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    let records = r.nullable_bytes()?.unwrap_or_default();
                    let (record_count, size) = count_records(records);
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            record_count,
                            records_size: size,
                            ..Default::default()
                        },
                    );
                    r.tagged()?;
                }
                r.tagged()?;
            }
        }
        ApiKey::Fetch => {
            if v <= 14 {
                r.i32()?;
            }
            r.i32()?;
            r.i32()?;
            if v >= 3 {
                r.i32()?;
            }
            if v >= 4 {
                r.take(1)?;
            }
            if v >= 7 {
                r.i32()?;
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 13)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    if v >= 9 {
                        r.i32()?;
                    }
                    r.i64()?;
                    if v >= 12 {
                        r.i32()?;
                    }
                    if v >= 5 {
                        r.i64()?;
                    }
                    r.i32()?;
                    if v >= 17 {
                        r.take(16)?;
                    }
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            ..Default::default()
                        },
                    );
                }
                r.tagged()?;
            }
        }
        ApiKey::Metadata => {
            for _ in 0..r.array()? {
                if v >= 10 {
                    r.take(16)?;
                }
                let name = r.nullable_string()?.unwrap_or_default();
                d.topic(name);
                r.tagged()?;
            }
        }
        ApiKey::FindCoordinator => {
            if v <= 3 {
                d.group_id = r.nullable_string()?.unwrap_or_default();
            } else {
                r.take(1)?;
                for i in 0..r.array()? {
                    let key = r.nullable_string()?.unwrap_or_default();
                    if i == 0 {
                        d.group_id = key;
                    }
                }
            }
        }
        // Each of these starts with the group id.
        ApiKey::JoinGroup | ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => {
            d.group_id = r.nullable_string()?.unwrap_or_default();
        }
        ApiKey::OffsetCommit => {
            d.group_id = r.nullable_string()?.unwrap_or_default();
            if v >= 1 {
                r.i32()?;
                r.nullable_string()?;
            }
            if v >= 7 {
                r.nullable_string()?;
            }
            if (2..=4).contains(&v) {
                r.i64()?;
            }
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 10)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    r.i64()?;
                    if v >= 6 {
                        r.i32()?;
                    }
                    if v == 1 {
                        r.i64()?;
                    }
                    r.nullable_string()?;
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            ..Default::default()
                        },
                    );
                }
                r.tagged()?;
            }
        }
        ApiKey::ApiVersions => {}
        _ => return None,
    }
    Some(())
}

pub(super) fn response_body(api: ApiKey, v: i16, r: &mut Reader, d: &mut Decoded) -> Option<()> {
    match api {
        ApiKey::Produce => {
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 13)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    let error_code = i32::from(r.i16()?);
                    r.i64()?;
                    if v >= 2 {
                        r.i64()?;
                    }
                    if v >= 5 {
                        r.i64()?;
                    }
                    if v >= 8 {
                        for _ in 0..r.array()? {
                            r.i32()?;
                            r.nullable_string()?;
                            r.tagged()?;
                        }
                        r.nullable_string()?;
                    }
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            error_code,
                            ..Default::default()
                        },
                    );
                }
                r.tagged()?;
            }
        }
        ApiKey::Fetch => {
            if v >= 1 {
                r.i32()?;
            }
            if v >= 7 {
                let e = r.i16()?;
                d.set_error(e);
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 13)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    let error_code = i32::from(r.i16()?);
                    r.i64()?;
                    if v >= 4 {
                        r.i64()?;
                    }
                    if v >= 5 {
                        r.i64()?;
                    }
                    if v >= 4 {
                        for _ in 0..r.array()? {
                            r.i64()?;
                            r.i64()?;
                            r.tagged()?;
                        }
                    }
                    if v >= 11 {
                        r.i32()?;
                    }
                    let records = r.nullable_bytes()?.unwrap_or_default();
                    let (record_count, records_size) = count_records(records);
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            error_code,
                            record_count,
                            records_size,
                        },
                    );
                }
                r.tagged()?;
            }
        }
        ApiKey::Metadata => {
            if v >= 3 {
                r.i32()?;
            }
            for _ in 0..r.array()? {
                r.i32()?;
                r.nullable_string()?;
                r.i32()?;
                if v >= 1 {
                    r.nullable_string()?;
                }
                r.tagged()?;
            }
            if v >= 2 {
                r.nullable_string()?;
            }
            if v >= 1 {
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let error = r.i16()?;
                if d.first_topic_error == 0 {
                    d.first_topic_error = i32::from(error);
                }
                let t = d.topic(r.nullable_string()?.unwrap_or_default());
                if v >= 10 {
                    r.take(16)?;
                }
                if v >= 1 {
                    r.take(1)?;
                }
                for _ in 0..r.array()? {
                    let error_code = i32::from(r.i16()?);
                    let index = r.i32()?;
                    r.i32()?;
                    if v >= 7 {
                        r.i32()?;
                    }
                    r.int32_array()?;
                    r.int32_array()?;
                    if v >= 5 {
                        r.int32_array()?;
                    }
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            error_code,
                            ..Default::default()
                        },
                    );
                }
                if v >= 8 {
                    r.i32()?;
                }
                r.tagged()?;
            }
        }
        ApiKey::ApiVersions
        | ApiKey::FindCoordinator
        | ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup => {
            let throttle_first = match api {
                ApiKey::FindCoordinator | ApiKey::SyncGroup | ApiKey::Heartbeat => v >= 1,
                ApiKey::LeaveGroup => v >= 1,
                ApiKey::JoinGroup => v >= 2,
                _ => false,
            };
            if throttle_first {
                r.i32()?;
            }
            if api == ApiKey::FindCoordinator && v >= 4 {
                for _ in 0..r.array()? {
                    r.nullable_string()?;
                    r.i32()?;
                    r.nullable_string()?;
                    r.i32()?;
                    let e = r.i16()?;
                    d.set_error(e);
                    r.nullable_string()?;
                    r.tagged()?;
                }
            } else {
                let e = r.i16()?;
                d.set_error(e);
            }
        }
        ApiKey::OffsetCommit => {
            if v >= 3 {
                r.i32()?;
            }
            for _ in 0..r.array()? {
                let t = d.topic(topic_name(r, v >= 10)?);
                for _ in 0..r.array()? {
                    let index = r.i32()?;
                    let error_code = i32::from(r.i16()?);
                    r.tagged()?;
                    d.partition(
                        t,
                        KafkaPartition {
                            index,
                            error_code,
                            ..Default::default()
                        },
                    );
                }
                r.tagged()?;
            }
        }
        _ => return None,
    }
    Some(())
}

/// Records in a partition's record batches (or legacy message sets), and
/// their size; a batch cut by the body cap counts as far as it is read.
pub(super) fn count_records(b: &[u8]) -> (u64, u64) {
    let mut count = 0u64;
    let mut at = 0usize;
    while b.len() - at >= 12 {
        let size = be_i32(&b[at + 8..at + 12]);
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        let magic = b.get(at + 16).copied();
        if magic == Some(2) && size >= 49 {
            match b.get(at + 57..at + 61) {
                Some(n) => count += u64::from(be_i32(n).max(0) as u32),
                None => break,
            }
        } else {
            count += 1;
        }
        at = at.saturating_add(12).saturating_add(size);
        if at >= b.len() {
            break;
        }
    }
    (count, b.len() as u64)
}

/// A cursor over a message's kept bytes; every read is bounds-checked and
/// nothing is preallocated from a length on the wire.
#[derive(Clone)]
pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
    /// Compact strings, arrays and tagged fields (the "flexible" versions).
    pub(super) flexible: bool,
}

impl<'a> Reader<'a> {
    pub(super) fn new(b: &'a [u8], flexible: bool) -> Self {
        Reader {
            b,
            pos: 0,
            flexible,
        }
    }

    pub(super) fn with_flexible(&mut self, flexible: bool) -> &mut Self {
        self.flexible = flexible;
        self
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(super) fn i16(&mut self) -> Option<i16> {
        self.take(2).map(be_i16)
    }

    pub(super) fn i32(&mut self) -> Option<i32> {
        self.take(4).map(be_i32)
    }

    pub(super) fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            i64::from_be_bytes(a)
        })
    }

    pub(super) fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length: `None` on the wire (null) as `Ok(None)`, a bad one as `None`.
    pub(super) fn length(&mut self, short: bool) -> Option<Option<usize>> {
        let n: i64 = if self.flexible {
            self.uvarint()? as i64 - 1
        } else if short {
            i64::from(self.i16()?)
        } else {
            i64::from(self.i32()?)
        };
        match n {
            -1 => Some(None),
            n if n < -1 => None,
            n => Some(Some(usize::try_from(n).ok()?)),
        }
    }

    pub(super) fn nullable_string(&mut self) -> Option<Option<String>> {
        match self.length(true)? {
            None => Some(None),
            Some(n) => {
                let s = self.take(n)?;
                Some(Some(String::from_utf8_lossy(s).into_owned()))
            }
        }
    }

    pub(super) fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.length(false)? {
            None => Some(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// An array's element count (a null array has none); each element takes
    /// at least one byte, so a count above the bytes left is malformed.
    pub(super) fn array(&mut self) -> Option<usize> {
        let n = self.length(false)?.unwrap_or(0);
        (n <= self.b.len() - self.pos).then_some(n)
    }

    pub(super) fn int32_array(&mut self) -> Option<()> {
        let n = self.array()?;
        self.take(n.checked_mul(4)?).map(|_| ())
    }

    /// Skips tagged fields (flexible versions only).
    pub(super) fn tagged(&mut self) -> Option<()> {
        if !self.flexible {
            return Some(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).ok()?;
            self.take(size)?;
        }
        Some(())
    }
}
