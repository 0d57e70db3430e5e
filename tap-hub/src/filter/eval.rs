//! The compiled filter and its evaluation against one entry. Values borrow
//! from the entry, from the filter's literals, or from the entry's JSON form,
//! which is built at most once per entry and only when a protocol-specific
//! field is read; a comparison of common fields allocates nothing.

use super::time;
use proto::v1::{Entry, Header, Protocol, request, response};
use regex::Regex;
use serde_json::Value as Json;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use tap_dissect::GenericFields;
use tap_dissect::json::{EntryJson, RequestJson, ResponseJson};

/// A compiled filter expression. The compiler checked the types, so the
/// evaluator only meets mismatches through the JSON fallback.
#[derive(Debug)]
pub(super) enum Node {
    Const(Const),
    Field(Field),
    /// A header by name (lower-case), from the request or the response.
    Header(Dir, Box<str>),
    /// A path into the entry's JSON form, for every field without a fast path.
    Json(Box<[Seg]>),
    /// A comprehension's variable, by nesting level.
    Var(usize),
    List(Box<[Node]>),
    Not(Box<Node>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Cond(Box<[Node; 3]>),
    Cmp(CmpOp, Box<[Node; 2]>),
    /// `protocol == "…"` and the protocol shorthands, without a string compare.
    IsProtocol(i32),
    In(Box<[Node; 2]>),
    /// `x in [literals]`, the common form, with no evaluation of the list.
    InConst(Box<Node>, Box<[Const]>),
    Arith(ArithOp, Box<[Node; 2]>),
    Neg(Box<Node>),
    Select(Box<Node>, Box<str>),
    Index(Box<[Node; 2]>),
    Has(Box<Node>),
    Size(Box<Node>),
    Str(StrOp, Box<[Node; 2]>),
    Matches(Box<Node>, Regex),
    /// A pattern that is not a literal: compiled per evaluation.
    MatchesDyn(Box<[Node; 2]>),
    Now,
    Convert(Conversion, Box<Node>),
    Quant(Quantifier, Box<[Node; 2]>),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Const {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Box<str>),
    Ts(i64),
    Dur(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Src,
    Dst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dir {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Id,
    Ts,
    Node,
    Protocol,
    Tls,
    ElapsedUs,
    RequestSize,
    ResponseSize,
    FlowId,
    StreamId,
    Flags,
    Redacted,
    Ip(Side),
    Port(Side),
    Pod(Side),
    Namespace(Side),
    Service(Side),
    Method,
    Path,
    Status,
    Headers(Dir),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Seg {
    Key(Box<str>),
    Index(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Conversion {
    Int,
    UInt,
    Double,
    String,
    Duration,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quantifier {
    Exists,
    All,
    ExistsOne,
}

/// A value met while evaluating. `Absent` is a field the entry does not have.
#[derive(Debug, Clone)]
enum Val<'a> {
    Absent,
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Cow<'a, str>),
    /// The flow id, a string of 16 hex digits in the JSON form, kept as its
    /// number so reading it costs nothing.
    FlowId(u64),
    Ts(i64),
    Dur(i64),
    Strs(&'a [String]),
    Headers(&'a [Header]),
    /// A JSON array or object (JSON scalars become the values above).
    Json(&'a Json),
    List(Vec<Val<'a>>),
}

/// What one evaluation reads: the entry, the query's time, and the JSON form
/// of its request, response or whole once something asked for it.
struct Ctx<'a> {
    e: &'a Entry,
    now: i64,
    json: OnceCell<Option<Json>>,
    request: OnceCell<Option<Json>>,
    response: OnceCell<Option<Json>>,
}

impl<'a> Ctx<'a> {
    fn new(e: &'a Entry, now: i64) -> Self {
        Ctx {
            e,
            now,
            json: OnceCell::new(),
            request: OnceCell::new(),
            response: OnceCell::new(),
        }
    }

    /// The JSON value at the start of `path`, and the rest of the path. A
    /// path into `request` or `response` (all of them, from the compiler)
    /// serializes only that side: a fraction of the entry's tree.
    fn json_root<'p>(&'a self, path: &'p [Seg]) -> (Option<&'a Json>, &'p [Seg]) {
        match path.first() {
            Some(Seg::Key(k)) if &**k == "request" => (
                self.request
                    .get_or_init(|| serde_json::to_value(RequestJson(self.e)).ok())
                    .as_ref(),
                &path[1..],
            ),
            Some(Seg::Key(k)) if &**k == "response" => (
                self.response
                    .get_or_init(|| serde_json::to_value(ResponseJson(self.e)).ok())
                    .as_ref(),
                &path[1..],
            ),
            _ => (
                self.json
                    .get_or_init(|| serde_json::to_value(EntryJson(self.e)).ok())
                    .as_ref(),
                path,
            ),
        }
    }
}

/// A compiled filter: the expression, and its fast form when it has one.
#[derive(Debug)]
pub(super) struct Program {
    pub(super) root: Node,
    fast: Option<Fast>,
}

impl Program {
    pub(super) fn new(root: Node) -> Program {
        let fast = Fast::of(&root);
        Program { root, fast }
    }

    pub(super) fn matches(&self, e: &Entry, now_ns: u64) -> bool {
        let now = i64::try_from(now_ns).unwrap_or(i64::MAX);
        match &self.fast {
            Some(fast) => fast.test(e, now),
            None => self.matches_in_general(e, now),
        }
    }

    /// The general evaluator, whether or not the filter has a fast form.
    pub(super) fn matches_in_general(&self, e: &Entry, now: i64) -> bool {
        let cx = Ctx::new(e, now);
        // Grows only inside exists()/all(); empty costs nothing.
        let mut vars = Vec::new();
        self.root.test(&cx, &mut vars)
    }
}

/// The shapes most filters are made of (protocols, fields against literals or
/// `now()`, and, or, not), evaluated without the general evaluator's context.
/// A scan over stored entries waits on memory: the fewer instructions and
/// stack writes between one entry's load and the next's, the more loads the
/// CPU keeps in flight (`http` over a million stored entries takes half the
/// time it takes through the general evaluator). The comparisons themselves
/// are the general ones, and the tests check that both forms agree.
#[derive(Debug)]
enum Fast {
    Const(bool),
    Protocol(i32),
    /// A bool field as a condition: `tls`.
    Field(Field),
    /// A string field against a string literal (`==` or `!=`).
    Str(CmpOp, Field, Box<str>),
    StrIn(Field, Box<[Box<str>]>),
    /// An integer field against an integer literal.
    Int(CmpOp, Field, i128),
    Ts(CmpOp, Rhs),
    /// `s.contains("…")`, `.startsWith`, `.endsWith` on a string field.
    StrOp(StrOp, Field, Box<str>),
    Matches(Field, Regex),
    /// `"gap" in flags`.
    Listed(Field, Box<str>),
    Cmp(CmpOp, Field, Rhs),
    In(Field, Box<[Const]>),
    Not(Box<Fast>),
    And(Box<[Fast]>),
    Or(Box<[Fast]>),
}

/// The right side of a fast comparison.
#[derive(Debug)]
enum Rhs {
    Const(Const),
    /// `now()` plus this many nanoseconds: `now() - duration("5m")`.
    Now(i64),
}

impl Fast {
    fn of(n: &Node) -> Option<Fast> {
        let all = |ns: &[Node]| ns.iter().map(Fast::of).collect::<Option<Box<[Fast]>>>();
        Some(match n {
            Node::Const(Const::Bool(b)) => Fast::Const(*b),
            Node::IsProtocol(p) => Fast::Protocol(*p),
            Node::Field(f @ Field::Tls) => Fast::Field(*f),
            Node::Not(a) => Fast::Not(Box::new(Fast::of(a)?)),
            Node::And(ts) => Fast::And(all(ts)?),
            Node::Or(ts) => Fast::Or(all(ts)?),
            Node::Cmp(op, args) => {
                let (op, f, rhs) = match &**args {
                    [Node::Field(f), rhs] => (*op, *f, Rhs::of(rhs)?),
                    [lhs, Node::Field(f)] => (op.swapped(), *f, Rhs::of(lhs)?),
                    _ => return None,
                };
                let int = |c: &Const| match c {
                    Const::Int(i) => Some(i128::from(*i)),
                    Const::UInt(u) => Some(i128::from(*u)),
                    _ => None,
                };
                match rhs {
                    Rhs::Const(Const::Str(s))
                        if matches!(op, CmpOp::Eq | CmpOp::Ne) && is_str_field(f) =>
                    {
                        Fast::Str(op, f, s)
                    }
                    Rhs::Const(c) if is_int_field(f) && int(&c).is_some() => {
                        Fast::Int(op, f, int(&c)?)
                    }
                    Rhs::Const(Const::Ts(_)) | Rhs::Now(_) if f == Field::Ts => Fast::Ts(op, rhs),
                    rhs => Fast::Cmp(op, f, rhs),
                }
            }
            Node::Str(op, args) => match &**args {
                [Node::Field(f), Node::Const(Const::Str(x))] if is_str_field(*f) => {
                    Fast::StrOp(*op, *f, x.clone())
                }
                _ => return None,
            },
            Node::Matches(x, re) => match &**x {
                Node::Field(f) if is_str_field(*f) => Fast::Matches(*f, re.clone()),
                _ => return None,
            },
            Node::In(args) => match &**args {
                [
                    Node::Const(Const::Str(x)),
                    Node::Field(f @ (Field::Flags | Field::Redacted)),
                ] => Fast::Listed(*f, x.clone()),
                _ => return None,
            },
            Node::InConst(x, items) => match &**x {
                Node::Field(f) if is_str_field(*f) => {
                    let strs: Option<Box<[Box<str>]>> = items
                        .iter()
                        .map(|c| match c {
                            Const::Str(s) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    match strs {
                        Some(strs) => Fast::StrIn(*f, strs),
                        None => Fast::In(*f, items.clone()),
                    }
                }
                Node::Field(f) => Fast::In(*f, items.clone()),
                _ => return None,
            },
            _ => return None,
        })
    }

    fn test(&self, e: &Entry, now: i64) -> bool {
        match self {
            Fast::Const(b) => *b,
            Fast::Protocol(p) => e.protocol == *p,
            Fast::Field(f) => matches!(field(e, *f), Val::Bool(true)),
            Fast::Str(op, f, s) => match str_field(e, *f) {
                Some(v) => (v == &**s) == (*op == CmpOp::Eq),
                None => false,
            },
            Fast::StrIn(f, items) => {
                str_field(e, *f).is_some_and(|v| items.iter().any(|i| v == &**i))
            }
            Fast::StrOp(op, f, x) => str_field(e, *f).is_some_and(|v| match op {
                StrOp::Contains => v.contains(&**x),
                StrOp::StartsWith => v.starts_with(&**x),
                StrOp::EndsWith => v.ends_with(&**x),
            }),
            Fast::Matches(f, re) => str_field(e, *f).is_some_and(|v| re.is_match(v)),
            Fast::Listed(f, x) => {
                let list = if *f == Field::Flags {
                    &e.flags
                } else {
                    &e.redacted
                };
                list.iter().any(|v| v == &**x)
            }
            Fast::Int(op, f, n) => int_field(e, *f).is_some_and(|v| holds(*op, v.cmp(n))),
            Fast::Ts(op, rhs) => {
                let t = match rhs {
                    Rhs::Const(Const::Ts(t)) => Some(*t),
                    Rhs::Now(d) => now.checked_add(*d),
                    Rhs::Const(_) => None,
                };
                let ts = i64::try_from(e.ts_ns).unwrap_or(i64::MAX);
                t.is_some_and(|t| holds(*op, ts.cmp(&t)))
            }
            Fast::Cmp(op, f, rhs) => {
                let rhs = match rhs {
                    Rhs::Const(c) => c.val(),
                    Rhs::Now(d) => now.checked_add(*d).map_or(Val::Absent, Val::Ts),
                };
                compare(*op, &field(e, *f), &rhs)
            }
            Fast::In(f, items) => {
                let x = field(e, *f);
                !matches!(x, Val::Absent) && items.iter().any(|i| equals(&x, &i.val()))
            }
            Fast::Not(a) => !a.test(e, now),
            Fast::And(ts) => ts.iter().all(|t| t.test(e, now)),
            Fast::Or(ts) => ts.iter().any(|t| t.test(e, now)),
        }
    }
}

fn is_str_field(f: Field) -> bool {
    matches!(
        f,
        Field::Id
            | Field::Node
            | Field::Protocol
            | Field::Ip(_)
            | Field::Pod(_)
            | Field::Namespace(_)
            | Field::Service(_)
            | Field::Method
            | Field::Path
    )
}

/// A string field, as [`field`] reads it, without making a value of it.
#[inline]
fn str_field(e: &Entry, f: Field) -> Option<&str> {
    let ep = |side| match side {
        Side::Src => e.src.as_ref(),
        Side::Dst => e.dst.as_ref(),
    };
    match f {
        Field::Id => Some(&e.id),
        Field::Node => Some(&e.node),
        Field::Protocol => Some(Protocol::try_from(e.protocol).map_or("unknown", Protocol::name)),
        Field::Ip(s) => ep(s).map(|p| p.ip.as_str()),
        Field::Pod(s) => ep(s)?.pod.as_deref(),
        Field::Namespace(s) => ep(s)?.namespace.as_deref(),
        Field::Service(s) => ep(s)?.service.as_deref(),
        Field::Method => e.method(),
        Field::Path => e.path(),
        _ => None,
    }
}

fn is_int_field(f: Field) -> bool {
    matches!(
        f,
        Field::ElapsedUs
            | Field::RequestSize
            | Field::ResponseSize
            | Field::StreamId
            | Field::Port(_)
            | Field::Status
    )
}

/// An integer field, as [`field`] reads it.
#[inline]
fn int_field(e: &Entry, f: Field) -> Option<i128> {
    let ep = |side| match side {
        Side::Src => e.src.as_ref(),
        Side::Dst => e.dst.as_ref(),
    };
    match f {
        Field::ElapsedUs => e.elapsed_ns.map(|ns| i128::from(ns / 1000)),
        Field::RequestSize => Some(i128::from(e.request_size)),
        Field::ResponseSize => Some(i128::from(e.response_size)),
        Field::StreamId => Some(i128::from(e.stream_id)),
        Field::Port(s) => ep(s).map(|p| i128::from(p.port)),
        Field::Status => e.status().map(i128::from),
        _ => None,
    }
}

impl Rhs {
    fn of(n: &Node) -> Option<Rhs> {
        let dur = |n: &Node| match n {
            Node::Const(Const::Dur(d)) => Some(*d),
            _ => None,
        };
        Some(match n {
            Node::Const(c) => Rhs::Const(c.clone()),
            Node::Now => Rhs::Now(0),
            Node::Arith(op, args) => match (op, &**args) {
                (ArithOp::Add, [Node::Now, d]) | (ArithOp::Add, [d, Node::Now]) => {
                    Rhs::Now(dur(d)?)
                }
                (ArithOp::Sub, [Node::Now, d]) => Rhs::Now(dur(d)?.checked_neg()?),
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// The lower bound on `ts` that `root` implies in every alternative, if any.
pub(super) fn min_ts(root: &Node, now_ns: u64) -> Option<i64> {
    let now = i64::try_from(now_ns).unwrap_or(i64::MAX);
    match root {
        Node::And(terms) => terms.iter().filter_map(|t| min_ts(t, now_ns)).max(),
        Node::Or(terms) => terms
            .iter()
            .map(|t| min_ts(t, now_ns))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min(),
        Node::Cmp(op, args) => {
            let [a, b] = &**args;
            let (op, bound) = match (a, b) {
                (Node::Field(Field::Ts), b) => (*op, b),
                (a, Node::Field(Field::Ts)) => (op.swapped(), a),
                _ => return None,
            };
            let Val::Ts(t) = static_value(bound, now)? else {
                return None;
            };
            match op {
                CmpOp::Gt => t.checked_add(1),
                CmpOp::Ge | CmpOp::Eq => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The value of a node that reads nothing from the entry (literals, `now()`
/// and arithmetic on them).
fn static_value(n: &Node, now: i64) -> Option<Val<'_>> {
    fn reads_entry(n: &Node) -> bool {
        match n {
            Node::Const(_) | Node::Now => false,
            Node::Arith(_, args) => args.iter().any(reads_entry),
            Node::Neg(a) | Node::Convert(_, a) => reads_entry(a),
            _ => true,
        }
    }
    if reads_entry(n) {
        return None;
    }
    let e = Entry::default();
    let cx = Ctx::new(&e, now);
    match n.eval(&cx, &mut Vec::new()) {
        Val::Ts(t) => Some(Val::Ts(t)),
        _ => None,
    }
}

impl CmpOp {
    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub(super) fn swapped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            op => op,
        }
    }
}

impl Const {
    fn val(&self) -> Val<'_> {
        match self {
            Const::Null => Val::Null,
            Const::Bool(b) => Val::Bool(*b),
            Const::Int(i) => Val::Int(*i),
            Const::UInt(u) => Val::UInt(*u),
            Const::Double(d) => Val::Double(*d),
            Const::Str(s) => Val::Str(Cow::Borrowed(s)),
            Const::Ts(t) => Val::Ts(*t),
            Const::Dur(d) => Val::Dur(*d),
        }
    }
}

impl Node {
    /// The node as a condition: true only for `true`, so absent is false.
    fn test<'a>(&'a self, cx: &'a Ctx<'a>, vars: &mut Vec<Val<'a>>) -> bool {
        match self {
            Node::Not(a) => !a.test(cx, vars),
            Node::And(terms) => terms.iter().all(|t| t.test(cx, vars)),
            Node::Or(terms) => terms.iter().any(|t| t.test(cx, vars)),
            Node::Cond(args) => {
                let [c, a, b] = &**args;
                if c.test(cx, vars) {
                    a.test(cx, vars)
                } else {
                    b.test(cx, vars)
                }
            }
            Node::IsProtocol(p) => cx.e.protocol == *p,
            Node::Cmp(op, args) => {
                let [a, b] = &**args;
                compare(*op, &a.value(cx, vars), &b.value(cx, vars))
            }
            Node::In(args) => {
                let [x, list] = &**args;
                let x = x.value(cx, vars);
                if matches!(x, Val::Absent) {
                    return false;
                }
                if let Node::List(items) = list {
                    // Evaluated one by one, to stop at the first match.
                    return items.iter().any(|i| equals(&x, &i.value(cx, vars)));
                }
                contains_elem(&list.value(cx, vars), &x)
            }
            Node::InConst(x, items) => {
                let x = x.value(cx, vars);
                !matches!(x, Val::Absent) && items.iter().any(|i| equals(&x, &i.val()))
            }
            Node::Has(a) => !matches!(a.value(cx, vars), Val::Absent | Val::Null),
            Node::Str(op, args) => {
                let [s, t] = &**args;
                let (s, t) = (s.value(cx, vars), t.value(cx, vars));
                with_str(&s, |s| {
                    with_str(&t, |t| match op {
                        StrOp::Contains => s.contains(t),
                        StrOp::StartsWith => s.starts_with(t),
                        StrOp::EndsWith => s.ends_with(t),
                    })
                })
                .flatten()
                .unwrap_or(false)
            }
            Node::Matches(s, re) => {
                with_str(&s.value(cx, vars), |s| re.is_match(s)).unwrap_or(false)
            }
            Node::MatchesDyn(args) => {
                let [s, p] = &**args;
                let (s, p) = (s.eval(cx, vars), p.eval(cx, vars));
                with_str(&p, |p| {
                    let re = regex::RegexBuilder::new(p)
                        .size_limit(super::compile::REGEX_SIZE_LIMIT)
                        .build()
                        .ok()?;
                    with_str(&s, |s| re.is_match(s))
                })
                .flatten()
                .unwrap_or(false)
            }
            Node::Quant(q, args) => {
                let [range, pred] = &**args;
                quantify(*q, range.value(cx, vars), pred, cx, vars)
            }
            Node::Const(Const::Bool(b)) => *b,
            Node::Field(Field::Tls) => cx.e.tls,
            _ => matches!(self.eval(cx, vars), Val::Bool(true)),
        }
    }

    /// [`Node::eval`], with the leaves most operands are read inline: the
    /// general evaluator is a large function to enter once per entry.
    #[inline]
    fn value<'a>(&'a self, cx: &'a Ctx<'a>, vars: &mut Vec<Val<'a>>) -> Val<'a> {
        match self {
            Node::Const(c) => c.val(),
            Node::Field(f) => field(cx.e, *f),
            _ => self.eval(cx, vars),
        }
    }

    fn eval<'a>(&'a self, cx: &'a Ctx<'a>, vars: &mut Vec<Val<'a>>) -> Val<'a> {
        match self {
            Node::Const(c) => c.val(),
            Node::Field(f) => field(cx.e, *f),
            Node::Header(dir, name) => match headers(cx.e, *dir) {
                Some(hs) => header(hs, name),
                None => Val::Absent,
            },
            Node::Json(path) => {
                let (root, path) = cx.json_root(path);
                let Some(mut v) = root else {
                    return Val::Absent;
                };
                for seg in path {
                    let next = match seg {
                        Seg::Key(k) => v.get(&**k),
                        Seg::Index(i) => usize::try_from(*i).ok().and_then(|i| v.get(i)),
                    };
                    match next {
                        Some(n) => v = n,
                        None => return Val::Absent,
                    }
                }
                from_json(v)
            }
            Node::Var(i) => vars.get(*i).cloned().unwrap_or(Val::Absent),
            Node::List(items) => Val::List(items.iter().map(|i| i.eval(cx, vars)).collect()),
            Node::Cond(args) => {
                let [c, a, b] = &**args;
                if c.test(cx, vars) {
                    a.eval(cx, vars)
                } else {
                    b.eval(cx, vars)
                }
            }
            Node::Arith(op, args) => {
                let [a, b] = &**args;
                arith(*op, a.eval(cx, vars), b.eval(cx, vars))
            }
            Node::Neg(a) => match a.eval(cx, vars) {
                Val::Int(i) => i.checked_neg().map_or(Val::Absent, Val::Int),
                Val::Double(d) => Val::Double(-d),
                Val::Dur(d) => d.checked_neg().map_or(Val::Absent, Val::Dur),
                _ => Val::Absent,
            },
            Node::Select(a, key) => select(a.eval(cx, vars), key),
            Node::Index(args) => {
                let [a, i] = &**args;
                index(a.eval(cx, vars), &i.eval(cx, vars))
            }
            Node::Size(a) => size(&a.eval(cx, vars)),
            Node::Now => Val::Ts(cx.now),
            Node::Convert(c, a) => convert(*c, a.eval(cx, vars)),
            Node::Not(_)
            | Node::And(_)
            | Node::Or(_)
            | Node::IsProtocol(_)
            | Node::Cmp(..)
            | Node::In(_)
            | Node::InConst(..)
            | Node::Has(_)
            | Node::Str(..)
            | Node::Matches(..)
            | Node::MatchesDyn(_)
            | Node::Quant(..) => Val::Bool(self.test(cx, vars)),
        }
    }
}

#[inline]
fn field(e: &Entry, f: Field) -> Val<'_> {
    let ep = |side| match side {
        Side::Src => e.src.as_ref(),
        Side::Dst => e.dst.as_ref(),
    };
    fn opt_str(s: Option<&String>) -> Val<'_> {
        s.map_or(Val::Absent, |s| Val::Str(Cow::Borrowed(s)))
    }
    let num = |n: u64| i64::try_from(n).map_or(Val::UInt(n), Val::Int);
    match f {
        Field::Id => Val::Str(Cow::Borrowed(&e.id)),
        Field::Ts => Val::Ts(i64::try_from(e.ts_ns).unwrap_or(i64::MAX)),
        Field::Node => Val::Str(Cow::Borrowed(&e.node)),
        Field::Protocol => Val::Str(Cow::Borrowed(
            Protocol::try_from(e.protocol).map_or("unknown", Protocol::name),
        )),
        Field::Tls => Val::Bool(e.tls),
        Field::ElapsedUs => e.elapsed_ns.map_or(Val::Absent, |ns| num(ns / 1000)),
        Field::RequestSize => num(e.request_size),
        Field::ResponseSize => num(e.response_size),
        Field::FlowId => Val::FlowId(e.flow_id),
        Field::StreamId => num(e.stream_id),
        Field::Flags => Val::Strs(&e.flags),
        Field::Redacted => Val::Strs(&e.redacted),
        Field::Ip(s) => ep(s).map_or(Val::Absent, |p| Val::Str(Cow::Borrowed(&p.ip))),
        Field::Port(s) => ep(s).map_or(Val::Absent, |p| Val::Int(i64::from(p.port))),
        Field::Pod(s) => opt_str(ep(s).and_then(|p| p.pod.as_ref())),
        Field::Namespace(s) => opt_str(ep(s).and_then(|p| p.namespace.as_ref())),
        Field::Service(s) => opt_str(ep(s).and_then(|p| p.service.as_ref())),
        Field::Method => e
            .method()
            .map_or(Val::Absent, |m| Val::Str(Cow::Borrowed(m))),
        Field::Path => e.path().map_or(Val::Absent, |p| Val::Str(Cow::Borrowed(p))),
        Field::Status => e.status().map_or(Val::Absent, Val::Int),
        Field::Headers(dir) => headers(e, dir).map_or(Val::Absent, Val::Headers),
    }
}

/// The headers `request.headers` and `response.headers` read: HTTP/1 and
/// HTTP/2, gRPC metadata, and the HTTP message a GraphQL operation came in.
fn headers(e: &Entry, dir: Dir) -> Option<&[Header]> {
    match dir {
        Dir::Request => match e.request.as_ref()?.kind.as_ref()? {
            request::Kind::Http(r) => Some(&r.headers),
            request::Kind::Grpc(r) => Some(&r.headers),
            request::Kind::Graphql(r) => r.http.as_ref().map(|h| h.headers.as_slice()),
            _ => None,
        },
        Dir::Response => match e.response.as_ref()?.kind.as_ref()? {
            response::Kind::Http(r) => Some(&r.headers),
            response::Kind::Grpc(r) => Some(&r.headers),
            response::Kind::Graphql(r) => r.http.as_ref().map(|h| h.headers.as_slice()),
            _ => None,
        },
    }
}

/// A header's value as the JSON form has it: repeated headers joined with ", ".
fn header<'a>(hs: &'a [Header], name: &str) -> Val<'a> {
    let mut same = hs.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    let Some(first) = same.next() else {
        return Val::Absent;
    };
    if same.next().is_none() {
        return Val::Str(Cow::Borrowed(&first.value));
    }
    let joined: Vec<&str> = hs
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
        .collect();
    Val::Str(Cow::Owned(joined.join(", ")))
}

/// Header names once each, lower-case, in the order they first appear.
fn header_names(hs: &[Header]) -> impl Iterator<Item = Cow<'_, str>> {
    hs.iter().enumerate().filter_map(|(i, h)| {
        if hs[..i].iter().any(|p| p.name.eq_ignore_ascii_case(&h.name)) {
            return None;
        }
        Some(if h.name.bytes().any(|c| c.is_ascii_uppercase()) {
            Cow::Owned(h.name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(h.name.as_str())
        })
    })
}

fn from_json(v: &Json) -> Val<'_> {
    match v {
        Json::Null => Val::Null,
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map(Val::Int)
            .or_else(|| n.as_u64().map(Val::UInt))
            .or_else(|| n.as_f64().map(Val::Double))
            .unwrap_or(Val::Absent),
        Json::String(s) => Val::Str(Cow::Borrowed(s)),
        Json::Array(_) | Json::Object(_) => Val::Json(v),
    }
}

/// Runs `f` on the value as a string, if it is one.
fn with_str<R>(v: &Val<'_>, f: impl FnOnce(&str) -> R) -> Option<R> {
    match v {
        Val::Str(s) => Some(f(s)),
        Val::FlowId(id) => Some(f(proto::FlowHex::new(*id).as_str())),
        _ => None,
    }
}

fn select<'a>(v: Val<'a>, key: &str) -> Val<'a> {
    match v {
        Val::Json(Json::Object(m)) => m.get(key).map_or(Val::Absent, from_json),
        Val::Headers(hs) => header(hs, key),
        _ => Val::Absent,
    }
}

fn index<'a>(v: Val<'a>, i: &Val<'_>) -> Val<'a> {
    let position = |len: usize| match i {
        Val::Int(i) => usize::try_from(*i).ok().filter(|i| *i < len),
        Val::UInt(u) => usize::try_from(*u).ok().filter(|i| *i < len),
        _ => None,
    };
    match v {
        Val::Json(Json::Array(a)) => position(a.len()).map_or(Val::Absent, |i| from_json(&a[i])),
        Val::Strs(s) => position(s.len()).map_or(Val::Absent, |i| Val::Str(Cow::Borrowed(&s[i]))),
        Val::List(mut l) => match position(l.len()) {
            Some(i) => l.swap_remove(i),
            None => Val::Absent,
        },
        Val::Json(Json::Object(_)) | Val::Headers(_) => {
            with_str(i, |k| select(v, k)).unwrap_or(Val::Absent)
        }
        _ => Val::Absent,
    }
}

fn size(v: &Val<'_>) -> Val<'static> {
    let n = match v {
        Val::Str(s) => s.chars().count(),
        Val::FlowId(_) => 16,
        Val::Strs(s) => s.len(),
        Val::Headers(hs) => header_names(hs).count(),
        Val::Json(Json::Array(a)) => a.len(),
        Val::Json(Json::Object(m)) => m.len(),
        Val::List(l) => l.len(),
        _ => return Val::Absent,
    };
    i64::try_from(n).map_or(Val::Absent, Val::Int)
}

/// `x in v`: membership in a list, a key of a map.
fn contains_elem(v: &Val<'_>, x: &Val<'_>) -> bool {
    match v {
        Val::Strs(s) => with_str(x, |x| s.iter().any(|s| s == x)).unwrap_or(false),
        Val::Json(Json::Array(a)) => a.iter().any(|e| equals(x, &from_json(e))),
        Val::Json(Json::Object(m)) => with_str(x, |k| m.contains_key(k)).unwrap_or(false),
        Val::Headers(hs) => {
            with_str(x, |k| hs.iter().any(|h| h.name.eq_ignore_ascii_case(k))).unwrap_or(false)
        }
        Val::List(l) => l.iter().any(|e| equals(x, e)),
        _ => false,
    }
}

fn quantify<'a>(
    q: Quantifier,
    range: Val<'a>,
    pred: &'a Node,
    cx: &'a Ctx<'a>,
    vars: &mut Vec<Val<'a>>,
) -> bool {
    let mut hits = 0usize;
    let mut misses = 0usize;
    let mut visit = |elem: Val<'a>, vars: &mut Vec<Val<'a>>| -> bool {
        vars.push(elem);
        let hit = pred.test(cx, vars);
        vars.pop();
        if hit {
            hits += 1;
        } else {
            misses += 1;
        }
        // Whether to go on: the answer is known at the first hit (exists),
        // the first miss (all), the second hit (exists_one).
        match q {
            Quantifier::Exists => !hit,
            Quantifier::All => hit,
            Quantifier::ExistsOne => hits < 2,
        }
    };
    let iterable = match range {
        Val::Strs(s) => {
            let _ = s
                .iter()
                .try_for_each(|e| go_on(visit(Val::Str(Cow::Borrowed(e)), vars)));
            true
        }
        Val::Json(Json::Array(a)) => {
            let _ = a.iter().try_for_each(|e| go_on(visit(from_json(e), vars)));
            true
        }
        Val::Json(Json::Object(m)) => {
            let _ = m
                .keys()
                .try_for_each(|k| go_on(visit(Val::Str(Cow::Borrowed(k)), vars)));
            true
        }
        Val::Headers(hs) => {
            let _ = header_names(hs).try_for_each(|k| go_on(visit(Val::Str(k), vars)));
            true
        }
        Val::List(l) => {
            let _ = l.into_iter().try_for_each(|e| go_on(visit(e, vars)));
            true
        }
        _ => false,
    };
    iterable
        && match q {
            Quantifier::Exists => hits > 0,
            Quantifier::All => misses == 0,
            Quantifier::ExistsOne => hits == 1,
        }
}

fn go_on(more: bool) -> Result<(), ()> {
    if more { Ok(()) } else { Err(()) }
}

/// `==` with the absent rules: `null` equals absent and null; otherwise an
/// absent side, or values of different types, are never equal.
fn equals(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, x) | (x, Val::Null) => matches!(x, Val::Absent | Val::Null),
        _ => same(a, b) == Some(true),
    }
}

/// `!=`: true only when both sides are there and differ (or one is `null`
/// and the other is there).
fn not_equals(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, x) | (x, Val::Null) => !matches!(x, Val::Absent | Val::Null),
        _ => same(a, b) == Some(false),
    }
}

/// Whether two present values are equal; `None` when they cannot be compared.
fn same(a: &Val<'_>, b: &Val<'_>) -> Option<bool> {
    match (a, b) {
        (Val::Bool(x), Val::Bool(y)) => Some(x == y),
        (Val::Strs(x), Val::Strs(y)) => Some(x == y),
        (Val::Json(x), Val::Json(y)) => Some(x == y),
        (Val::Strs(x), Val::List(y)) | (Val::List(y), Val::Strs(x)) => Some(
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(s, v)| with_str(v, |v| v == s).unwrap_or(false)),
        ),
        (Val::List(x), Val::List(y)) => {
            Some(x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b) == Some(true)))
        }
        // Equality of strings of different lengths reads neither string: in
        // a scan, a string's bytes are a cache miss away.
        (Val::Str(x), Val::Str(y)) => Some(x == y),
        _ => order(a, b).map(|o| o == Ordering::Equal),
    }
}

/// The order of two values of the same kind (numbers of any kind together).
fn order(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::UInt(x), Val::UInt(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::UInt(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Val::UInt(x), Val::Int(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Val::Double(x), y) => x.partial_cmp(&as_f64(y)?),
        (x, Val::Double(y)) => as_f64(x)?.partial_cmp(y),
        (Val::Ts(x), Val::Ts(y)) | (Val::Dur(x), Val::Dur(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        _ => with_str(a, |a| with_str(b, |b| a.cmp(b))).flatten(),
    }
}

fn as_f64(v: &Val<'_>) -> Option<f64> {
    match v {
        Val::Int(i) => Some(*i as f64),
        Val::UInt(u) => Some(*u as f64),
        Val::Double(d) => Some(*d),
        _ => None,
    }
}

fn compare(op: CmpOp, a: &Val<'_>, b: &Val<'_>) -> bool {
    match op {
        CmpOp::Eq => equals(a, b),
        CmpOp::Ne => not_equals(a, b),
        _ => order(a, b).is_some_and(|o| holds(op, o)),
    }
}

/// Whether `a op b` holds when `a` is ordered `o` relative to `b`.
fn holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq => o.is_eq(),
        CmpOp::Ne => o.is_ne(),
        CmpOp::Lt => o.is_lt(),
        CmpOp::Le => o.is_le(),
        CmpOp::Gt => o.is_gt(),
        CmpOp::Ge => o.is_ge(),
    }
}

fn arith<'a>(op: ArithOp, a: Val<'a>, b: Val<'a>) -> Val<'a> {
    use ArithOp::*;
    let int = |n: i128| {
        i64::try_from(n)
            .map(Val::Int)
            .or_else(|_| u64::try_from(n).map(Val::UInt))
            .unwrap_or(Val::Absent)
    };
    match (&a, &b) {
        (Val::Double(_), _) | (_, Val::Double(_)) => {
            let (Some(x), Some(y)) = (as_f64(&a), as_f64(&b)) else {
                return Val::Absent;
            };
            match op {
                Add => Val::Double(x + y),
                Sub => Val::Double(x - y),
                Mul => Val::Double(x * y),
                Div => Val::Double(x / y),
                Rem => Val::Absent,
            }
        }
        (Val::Int(_) | Val::UInt(_), Val::Int(_) | Val::UInt(_)) => {
            let wide = |v: &Val<'_>| match v {
                Val::Int(i) => i128::from(*i),
                Val::UInt(u) => i128::from(*u),
                _ => 0,
            };
            let (x, y) = (wide(&a), wide(&b));
            match op {
                Add => int(x + y),
                Sub => int(x - y),
                Mul => x.checked_mul(y).map_or(Val::Absent, int),
                Div => x.checked_div(y).map_or(Val::Absent, int),
                Rem => x.checked_rem(y).map_or(Val::Absent, int),
            }
        }
        (Val::Ts(t), Val::Dur(d)) | (Val::Dur(d), Val::Ts(t)) if op == Add => {
            t.checked_add(*d).map_or(Val::Absent, Val::Ts)
        }
        (Val::Ts(t), Val::Dur(d)) if op == Sub => t.checked_sub(*d).map_or(Val::Absent, Val::Ts),
        (Val::Ts(x), Val::Ts(y)) if op == Sub => x.checked_sub(*y).map_or(Val::Absent, Val::Dur),
        (Val::Dur(x), Val::Dur(y)) if op == Add => x.checked_add(*y).map_or(Val::Absent, Val::Dur),
        (Val::Dur(x), Val::Dur(y)) if op == Sub => x.checked_sub(*y).map_or(Val::Absent, Val::Dur),
        _ if op == Add => with_str(&a, |x| {
            with_str(&b, |y| Val::Str(Cow::Owned([x, y].concat())))
        })
        .flatten()
        .unwrap_or(Val::Absent),
        _ => Val::Absent,
    }
}

fn convert(c: Conversion, v: Val<'_>) -> Val<'_> {
    match c {
        Conversion::Int => match v {
            Val::Int(_) => v,
            Val::UInt(u) => i64::try_from(u).map_or(Val::Absent, Val::Int),
            // i64's range is [-2^63, 2^63).
            Val::Double(d)
                if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&d) =>
            {
                Val::Int(d.trunc() as i64)
            }
            Val::Ts(t) => Val::Int(t.div_euclid(1_000_000_000)),
            Val::Bool(b) => Val::Int(i64::from(b)),
            _ => with_str(&v, |s| s.trim().parse().map_or(Val::Absent, Val::Int))
                .unwrap_or(Val::Absent),
        },
        Conversion::UInt => match v {
            Val::UInt(_) => v,
            Val::Int(i) => u64::try_from(i).map_or(Val::Absent, Val::UInt),
            Val::Double(d) if (0.0..18_446_744_073_709_551_616.0).contains(&d) => {
                Val::UInt(d.trunc() as u64)
            }
            _ => with_str(&v, |s| s.trim().parse().map_or(Val::Absent, Val::UInt))
                .unwrap_or(Val::Absent),
        },
        Conversion::Double => match as_f64(&v) {
            Some(d) => Val::Double(d),
            None => with_str(&v, |s| s.trim().parse().map_or(Val::Absent, Val::Double))
                .unwrap_or(Val::Absent),
        },
        Conversion::String => match v {
            Val::Str(_) => v,
            Val::FlowId(_) => {
                with_str(&v, |s| Val::Str(Cow::Owned(s.to_owned()))).unwrap_or(Val::Absent)
            }
            Val::Int(i) => Val::Str(Cow::Owned(i.to_string())),
            Val::UInt(u) => Val::Str(Cow::Owned(u.to_string())),
            Val::Double(d) => Val::Str(Cow::Owned(d.to_string())),
            Val::Bool(b) => Val::Str(Cow::Borrowed(if b { "true" } else { "false" })),
            Val::Ts(t) => Val::Str(Cow::Owned(time::format_timestamp(t))),
            Val::Dur(d) => Val::Str(Cow::Owned(time::format_duration(d))),
            _ => Val::Absent,
        },
        Conversion::Duration => match v {
            Val::Dur(_) => v,
            _ => with_str(&v, |s| {
                time::parse_duration(s).map_or(Val::Absent, Val::Dur)
            })
            .unwrap_or(Val::Absent),
        },
        Conversion::Timestamp => match v {
            Val::Ts(_) => v,
            Val::Int(secs) => secs.checked_mul(1_000_000_000).map_or(Val::Absent, Val::Ts),
            _ => with_str(&v, |s| {
                time::parse_timestamp(s).map_or(Val::Absent, Val::Ts)
            })
            .unwrap_or(Val::Absent),
        },
    }
}
