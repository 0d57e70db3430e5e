//! From CEL's syntax tree to the evaluator's [`Node`]s: names are resolved to
//! entry fields, literals are converted once (regular expressions, durations,
//! timestamps, protocol names), and types are checked so that mistakes are
//! reported with their column when the filter is parsed rather than silently
//! matching nothing.

use super::eval::{
    ArithOp, CmpOp, Const, Conversion, Dir, Field, Node, Quantifier, Seg, Side, StrOp,
};
use super::{FilterError, MAX_DEPTH, column_at, time};
use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, SourceInfo};
use proto::v1::Protocol;

/// Compiled size limit of a regular expression: a pattern is user input.
pub(super) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// CEL's parser (ANTLR) recurses deeply and with large frames, over 100 KiB
/// per bracket level in a debug build; it runs on a thread of its own with
/// this much stack (reserved, touched only as used) so that no filter can
/// overflow the caller's.
const PARSER_STACK: usize = 64 << 20;

/// CEL's own limit on nested expressions, a backstop behind ours.
const CEL_RECURSION_LIMIT: u16 = 250;

const FIELDS: &str = "id, ts, node, protocol, src, dst, tls, elapsed_us, request_size, \
     response_size, flow_id, stream_id, request, response, redacted, flags, tunnel, \
     and the protocol names http, grpc, dns, …";
const ENDPOINT_FIELDS: &str = "ip, port, pod, namespace, service";
const FUNCTIONS: &str = "size, has, now, duration, timestamp, int, uint, double, string, \
     contains, startsWith, endsWith, matches, exists, all, exists_one";

/// `src` as the user wrote it and `cel`, the same text with the word
/// operators rewritten (every character at the same place). `None` when the
/// filter is `true`.
pub(super) fn compile(src: &str, cel: &str) -> Result<Option<Node>, FilterError> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("filter-parser".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(s, || compile_here(src, cel))
            .map_err(|e| FilterError::new(1, format!("cannot start the filter parser: {e}")))?
            .join()
            .map_err(|_| FilterError::new(1, "the filter parser failed (a bug in kubetap)"))?
    })
}

fn compile_here(src: &str, cel: &str) -> Result<Option<Node>, FilterError> {
    let (expr, info) = cel::Env::default()
        .with_optional_support(false)
        .parser()
        .max_recursion_depth(CEL_RECURSION_LIMIT)
        .parse_with_source_info(cel)
        .map_err(|errors| syntax_error(src, errors))?;
    let mut c = Compiler {
        src,
        info: &info,
        vars: Vec::new(),
    };
    let (node, ty) = c.expr(&expr, 0)?;
    if !matches!(ty, Ty::Bool | Ty::Dyn) {
        return Err(FilterError::new(
            c.start_col(&expr),
            format!(
                "a filter is a condition (true or false), but this is {}; compare it, as in x == 1",
                ty.a()
            ),
        ));
    }
    Ok(match node {
        Node::Const(Const::Bool(true)) => None,
        node => Some(node),
    })
}

/// The first of the parser's errors, with the user's column and a shorter message.
fn syntax_error(src: &str, errors: cel::ParseErrors) -> FilterError {
    // The grammar's own errors say more than those cel adds on the
    // incomplete tree they leave behind.
    let Some(e) = errors
        .errors
        .iter()
        .find(|e| e.msg.starts_with("Syntax error: "))
        .or_else(|| errors.errors.iter().find(|e| e.pos.0 >= 1))
        .or(errors.errors.first())
    else {
        return FilterError::new(1, "syntax error");
    };
    let offset = (e.expr_id != 0)
        .then(|| e.source_info.as_ref()?.offset_for(e.expr_id))
        .flatten();
    let column = match offset {
        Some((start, _)) => column_at(src, start as usize),
        None if e.pos.0 >= 1 => {
            let before: usize = src
                .split_inclusive('\n')
                .take(usize::try_from(e.pos.0 - 1).unwrap_or(0))
                .map(|l| l.chars().count())
                .sum();
            before + usize::try_from(e.pos.1).unwrap_or(1).max(1)
        }
        None => 1,
    };
    let msg = e.msg.strip_prefix("Syntax error: ").unwrap_or(&e.msg);
    let message = if msg == "UNKNOWN" {
        let cause = e.source.as_ref().map(|s| s.to_string()).unwrap_or_default();
        if cause.contains("Recursion limit") {
            format!("filter nested too deeply: more than {MAX_DEPTH} levels")
        } else {
            format!("syntax error: {cause}")
        }
    } else if let Some(c) = msg.strip_prefix("token recognition error at: ") {
        format!("syntax error: unexpected character {c}")
    } else if let Some(rest) = msg
        .strip_prefix("mismatched input ")
        .or_else(|| msg.strip_prefix("extraneous input "))
    {
        let (token, expecting) = rest.split_once(" expecting ").unwrap_or((rest, ""));
        if token == "'<EOF>'" {
            "syntax error: unexpected end of filter".to_string()
        } else if expecting.is_empty() || expecting.len() > 40 || expecting == "<EOF>" {
            format!("syntax error: unexpected {token}")
        } else {
            format!("syntax error: unexpected {token}, expecting {expecting}")
        }
    } else if let Some(input) = msg.strip_prefix("no viable alternative at input ") {
        format!("syntax error: unexpected input {input}")
    } else {
        format!("syntax error: {}", msg.replace("'<EOF>'", "end of filter"))
    };
    // The parser saw `&&` where the user wrote `and`: name what they wrote.
    let written = src.chars().skip(column.saturating_sub(1));
    let message = [("'&&'", "and"), ("'||'", "or"), ("'!'", "not")]
        .into_iter()
        .find(|(op, word)| {
            message.contains(op) && written.clone().take(word.len()).eq(word.chars())
        })
        .map_or(message.clone(), |(op, word)| {
            message.replacen(op, &format!("'{word}'"), 1)
        });
    FilterError::new(column, message)
}

/// A static type: what the compiler knows of a value. `Dyn` is a field of the
/// JSON form, known only at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Num,
    Str,
    Ts,
    Dur,
    Null,
    List(Elem),
    /// Headers: string keys and values.
    Map,
    Dyn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    Bool,
    Num,
    Str,
    Ts,
    Dur,
    Null,
    Dyn,
}

impl Ty {
    /// The type with its article, for messages: "a string", "an int".
    fn a(self) -> &'static str {
        match self {
            Ty::Bool => "a bool",
            Ty::Num => "a number",
            Ty::Str => "a string",
            Ty::Ts => "a timestamp",
            Ty::Dur => "a duration",
            Ty::Null => "null",
            Ty::List(_) => "a list",
            Ty::Map => "a map",
            Ty::Dyn => "a value",
        }
    }

    /// The type's values, for messages: "strings".
    fn plural(self) -> &'static str {
        match self {
            Ty::Bool => "bools",
            Ty::Num => "numbers",
            Ty::Str => "strings",
            Ty::Ts => "timestamps",
            Ty::Dur => "durations",
            Ty::Null => "nulls",
            Ty::List(_) => "lists",
            Ty::Map => "maps",
            Ty::Dyn => "values",
        }
    }

    fn elem(self) -> Elem {
        match self {
            Ty::Bool => Elem::Bool,
            Ty::Num => Elem::Num,
            Ty::Str => Elem::Str,
            Ty::Ts => Elem::Ts,
            Ty::Dur => Elem::Dur,
            Ty::Null => Elem::Null,
            Ty::List(_) | Ty::Map | Ty::Dyn => Elem::Dyn,
        }
    }

    fn is_cond(self) -> bool {
        matches!(self, Ty::Bool | Ty::Dyn)
    }

    fn is_text(self) -> bool {
        matches!(self, Ty::Str | Ty::Dyn)
    }
}

impl Elem {
    fn ty(self) -> Ty {
        match self {
            Elem::Bool => Ty::Bool,
            Elem::Num => Ty::Num,
            Elem::Str => Ty::Str,
            Elem::Ts => Ty::Ts,
            Elem::Dur => Ty::Dur,
            Elem::Null => Ty::Null,
            Elem::Dyn => Ty::Dyn,
        }
    }
}

/// Whether values of the two types can be compared with `==`.
fn comparable(a: Ty, b: Ty) -> bool {
    match (a, b) {
        (Ty::Dyn, _) | (_, Ty::Dyn) | (Ty::Null, _) | (_, Ty::Null) => true,
        (Ty::List(_), Ty::List(_)) => true,
        _ => a == b,
    }
}

fn orderable(t: Ty) -> bool {
    matches!(t, Ty::Num | Ty::Str | Ty::Ts | Ty::Dur | Ty::Bool | Ty::Dyn)
}

/// The protocol's enum value, for a name of the JSON form.
fn protocol_code(name: &str) -> Option<i32> {
    (1..=64).find(|&i| Protocol::try_from(i).is_ok_and(|p| p.name() == name))
}

fn protocol_names() -> String {
    (1..=64)
        .filter_map(|i| Protocol::try_from(i).ok().map(Protocol::name))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Compiler<'s> {
    /// The filter as written: columns are counted in it.
    src: &'s str,
    info: &'s SourceInfo,
    /// The variables of the enclosing exists()/all(), innermost last.
    vars: Vec<(String, Ty)>,
}

type Compiled = Result<(Node, Ty), FilterError>;

impl Compiler<'_> {
    fn offset(&self, id: u64) -> Option<usize> {
        self.info.offset_for(id).map(|(start, _)| start as usize)
    }

    fn id_col(&self, id: u64) -> usize {
        self.offset(id).map_or(1, |o| column_at(self.src, o))
    }

    fn err(&self, column: usize, message: impl Into<String>) -> FilterError {
        FilterError::new(column, message)
    }

    /// The column where `e` starts: its leftmost token.
    fn start_col(&self, e: &IdedExpr) -> usize {
        self.start(e).map_or(1, |o| column_at(self.src, o))
    }

    fn start(&self, e: &IdedExpr) -> Option<usize> {
        let own = self.offset(e.id);
        let own = match &e.expr {
            // A call's position is its `(`; the name comes before.
            Expr::Call(c) if !is_operator(&c.func_name) => {
                own.map(|o| self.name_start(o, &c.func_name))
            }
            Expr::Struct(s) => own.map(|o| self.name_start(o, &s.type_name)),
            _ => own,
        };
        let children: Vec<&IdedExpr> = match &e.expr {
            Expr::Call(c) => c.target.as_deref().into_iter().chain(&c.args).collect(),
            Expr::Select(s) => vec![&s.operand],
            Expr::List(l) => l.elements.iter().collect(),
            _ => Vec::new(),
        };
        children
            .into_iter()
            .filter_map(|c| self.start(c))
            .chain(own)
            .min()
    }

    /// The offset of a called function's name, given that of its `(`.
    fn name_start(&self, paren: usize, name: &str) -> usize {
        let before = self.src.get(..paren).unwrap_or("").trim_end();
        match before.strip_suffix(name) {
            Some(rest) => rest.len(),
            None => paren,
        }
    }

    fn call_col(&self, e: &IdedExpr, name: &str) -> usize {
        self.offset(e.id)
            .map_or(1, |o| column_at(self.src, self.name_start(o, name)))
    }

    /// The column of the field name of a selection `a.name`, whose position
    /// is its `.`.
    fn field_col(&self, select_id: u64) -> usize {
        let Some(dot) = self.offset(select_id) else {
            return 1;
        };
        let after = self.src.get(dot + 1..).unwrap_or("");
        let name = dot + 1 + (after.len() - after.trim_start().len());
        column_at(self.src, name)
    }

    fn expr(&mut self, e: &IdedExpr, depth: usize) -> Compiled {
        if depth > MAX_DEPTH {
            return Err(self.err(
                self.start_col(e),
                format!("filter nested too deeply: more than {MAX_DEPTH} levels"),
            ));
        }
        match &e.expr {
            Expr::Literal(l) => self.literal(e, l),
            Expr::Ident(_) | Expr::Select(_) => self.name(e, depth),
            Expr::Call(c) => self.call(e, c, depth),
            Expr::List(l) => {
                let mut nodes = Vec::with_capacity(l.elements.len());
                let mut elem: Option<Elem> = None;
                for item in &l.elements {
                    let (n, t) = self.expr(item, depth + 1)?;
                    elem = Some(match (elem, t.elem()) {
                        (None, t) => t,
                        (Some(a), b) if a == b => a,
                        _ => Elem::Dyn,
                    });
                    nodes.push(n);
                }
                Ok((
                    Node::List(nodes.into()),
                    Ty::List(elem.unwrap_or(Elem::Dyn)),
                ))
            }
            Expr::Map(_) => Err(self.err(
                self.start_col(e),
                "map literals are not supported in filters",
            )),
            Expr::Struct(_) => Err(self.err(
                self.start_col(e),
                "message literals are not supported in filters",
            )),
            Expr::Comprehension(_) | Expr::Unspecified => {
                Err(self.err(self.start_col(e), "syntax error"))
            }
        }
    }

    fn literal(&self, e: &IdedExpr, l: &LiteralValue) -> Compiled {
        Ok(match l {
            LiteralValue::Boolean(b) => (Node::Const(Const::Bool(*b.inner())), Ty::Bool),
            LiteralValue::Int(i) => (Node::Const(Const::Int(*i.inner())), Ty::Num),
            LiteralValue::UInt(u) => (Node::Const(Const::UInt(*u.inner())), Ty::Num),
            LiteralValue::Double(d) => (Node::Const(Const::Double(*d.inner())), Ty::Num),
            LiteralValue::String(s) => (Node::Const(Const::Str(s.inner().into())), Ty::Str),
            LiteralValue::Null => (Node::Const(Const::Null), Ty::Null),
            LiteralValue::Bytes(_) => {
                return Err(self.err(
                    self.start_col(e),
                    "byte strings are not supported in filters; use a string",
                ));
            }
        })
    }

    /// An identifier or a selection `a.b.c`: a field of the entry, a
    /// variable of exists()/all(), or a field of some value.
    fn name(&mut self, e: &IdedExpr, depth: usize) -> Compiled {
        // The chain of names from the root identifier, if it is one.
        let mut segs = Vec::new();
        let mut cur = e;
        let root = loop {
            match &cur.expr {
                Expr::Ident(name) => break Some((name.as_str(), cur.id)),
                Expr::Select(s) => {
                    segs.push((s.field.as_str(), cur.id));
                    cur = &s.operand;
                }
                _ => break None,
            }
        };
        segs.reverse();
        // Each selection on a value nests a node: `x.a.b.c` is as deep as `((x.a).b).c`.
        let depth = depth + segs.len();
        if depth > MAX_DEPTH {
            return Err(self.err(
                self.start_col(e),
                format!("filter nested too deeply: more than {MAX_DEPTH} levels"),
            ));
        }
        let (mut node, mut ty, rest) = match root {
            Some((name, id)) => {
                let (node, ty, used) = self.root_field(name, id, &segs)?;
                (node, ty, &segs[used..])
            }
            // `(x).f`, `request.headers["a"].f`, `f().g`: the value first.
            None => {
                let (node, ty) = self.expr(cur, depth + 1)?;
                (node, ty, &segs[..])
            }
        };
        for &(field, id) in rest {
            (node, ty) = self.select(node, ty, field, id)?;
        }
        Ok((node, ty))
    }

    /// Resolves `name` followed by `segs`: the node, its type, and how many
    /// of `segs` it used.
    fn root_field(
        &self,
        name: &str,
        id: u64,
        segs: &[(&str, u64)],
    ) -> Result<(Node, Ty, usize), FilterError> {
        if let Some(slot) = self.vars.iter().rposition(|(v, _)| v == name) {
            return Ok((Node::Var(slot), self.vars[slot].1, 0));
        }
        let scalar = |f: Field, t: Ty| Ok((Node::Field(f), t, 0));
        match name {
            "id" => scalar(Field::Id, Ty::Str),
            "ts" => scalar(Field::Ts, Ty::Ts),
            "node" => scalar(Field::Node, Ty::Str),
            "protocol" => scalar(Field::Protocol, Ty::Str),
            "tls" => scalar(Field::Tls, Ty::Bool),
            "elapsed_us" => scalar(Field::ElapsedUs, Ty::Num),
            "request_size" => scalar(Field::RequestSize, Ty::Num),
            "response_size" => scalar(Field::ResponseSize, Ty::Num),
            "flow_id" => scalar(Field::FlowId, Ty::Str),
            "stream_id" => scalar(Field::StreamId, Ty::Num),
            "flags" => scalar(Field::Flags, Ty::List(Elem::Str)),
            "redacted" => scalar(Field::Redacted, Ty::List(Elem::Str)),
            // The overlay hop, read from the JSON form: `tunnel.kind == "vxlan"`,
            // `tunnel != null`.
            "tunnel" => {
                let path = std::iter::once(name)
                    .chain(segs.iter().map(|s| s.0))
                    .map(|k| Seg::Key(k.into()))
                    .collect();
                Ok((Node::Json(path), Ty::Dyn, segs.len()))
            }
            "src" | "dst" => {
                let side = if name == "src" { Side::Src } else { Side::Dst };
                let Some(&(sub, sub_id)) = segs.first() else {
                    // The endpoint as a whole: `src == null`.
                    return Ok((Node::Json([Seg::Key(name.into())].into()), Ty::Dyn, 0));
                };
                let (f, t) = match sub {
                    "ip" => (Field::Ip(side), Ty::Str),
                    "port" => (Field::Port(side), Ty::Num),
                    "pod" => (Field::Pod(side), Ty::Str),
                    "namespace" => (Field::Namespace(side), Ty::Str),
                    "service" => (Field::Service(side), Ty::Str),
                    _ => {
                        return Err(self.err(
                            self.field_col(sub_id),
                            format!("unknown field '{name}.{sub}' (known: {ENDPOINT_FIELDS})"),
                        ));
                    }
                };
                Ok((Node::Field(f), t, 1))
            }
            "request" | "response" => {
                let dir = if name == "request" {
                    Dir::Request
                } else {
                    Dir::Response
                };
                let fast = match (dir, segs.first().map(|s| s.0)) {
                    (Dir::Request, Some("method")) => Some((Field::Method, Ty::Str)),
                    (Dir::Request, Some("path")) => Some((Field::Path, Ty::Str)),
                    (Dir::Response, Some("status")) => Some((Field::Status, Ty::Num)),
                    (_, Some("headers")) => Some((Field::Headers(dir), Ty::Map)),
                    _ => None,
                };
                if let Some((f, t)) = fast {
                    return Ok((Node::Field(f), t, 1));
                }
                // Protocol-specific: read from the JSON form, whole path at once.
                let path = std::iter::once(name)
                    .chain(segs.iter().map(|s| s.0))
                    .map(|k| Seg::Key(k.into()))
                    .collect();
                Ok((Node::Json(path), Ty::Dyn, segs.len()))
            }
            _ => match protocol_code(name) {
                Some(code) => Ok((Node::IsProtocol(code), Ty::Bool, 0)),
                None => Err(self.err(
                    self.id_col(id),
                    format!("unknown field '{name}' (known: {FIELDS})"),
                )),
            },
        }
    }

    /// `value.field`.
    fn select(&self, node: Node, ty: Ty, field: &str, id: u64) -> Compiled {
        match (node, ty) {
            (Node::Field(Field::Headers(dir)), _) => Ok((
                Node::Header(dir, field.to_ascii_lowercase().into()),
                Ty::Str,
            )),
            (node, Ty::Map) => Ok((Node::Select(Box::new(node), field.into()), Ty::Str)),
            (Node::Json(path), _) => {
                Ok((Node::Json(extend(path, Seg::Key(field.into()))), Ty::Dyn))
            }
            (node, Ty::Dyn) => Ok((Node::Select(Box::new(node), field.into()), Ty::Dyn)),
            (_, ty) => Err(self.err(
                self.field_col(id),
                format!("cannot select field '{field}' of {}", ty.a()),
            )),
        }
    }

    fn call(&mut self, e: &IdedExpr, c: &CallExpr, depth: usize) -> Compiled {
        let d = depth + 1;
        let op_col = self.id_col(e.id);
        match (c.func_name.as_str(), c.target.as_deref(), c.args.as_slice()) {
            ("_&&_", None, [a, b]) => self.logic(true, a, b, d),
            ("_||_", None, [a, b]) => self.logic(false, a, b, d),
            ("!_", None, [a]) => {
                let n = self.cond(a, d)?;
                Ok((Node::Not(Box::new(n)), Ty::Bool))
            }
            ("-_", None, [a]) => {
                let (n, t) = self.expr(a, d)?;
                if !matches!(t, Ty::Num | Ty::Dur | Ty::Dyn) {
                    return Err(self.err(op_col, format!("cannot negate {}", t.a())));
                }
                Ok((Node::Neg(Box::new(n)), t))
            }
            ("_==_", None, [a, b]) => self.compare(CmpOp::Eq, a, b, d),
            ("_!=_", None, [a, b]) => self.compare(CmpOp::Ne, a, b, d),
            ("_<_", None, [a, b]) => self.compare(CmpOp::Lt, a, b, d),
            ("_<=_", None, [a, b]) => self.compare(CmpOp::Le, a, b, d),
            ("_>_", None, [a, b]) => self.compare(CmpOp::Gt, a, b, d),
            ("_>=_", None, [a, b]) => self.compare(CmpOp::Ge, a, b, d),
            ("@in", None, [x, list]) => self.member(x, list, d),
            ("_+_", None, [a, b]) => self.arith(ArithOp::Add, op_col, a, b, d),
            ("_-_", None, [a, b]) => self.arith(ArithOp::Sub, op_col, a, b, d),
            ("_*_", None, [a, b]) => self.arith(ArithOp::Mul, op_col, a, b, d),
            ("_/_", None, [a, b]) => self.arith(ArithOp::Div, op_col, a, b, d),
            ("_%_", None, [a, b]) => self.arith(ArithOp::Rem, op_col, a, b, d),
            ("_?_:_", None, [c, a, b]) => {
                let c = self.cond(c, d)?;
                let (na, ta) = self.expr(a, d)?;
                let (nb, tb) = self.expr(b, d)?;
                let t = match (ta, tb) {
                    _ if ta == tb => ta,
                    (Ty::Null, t) | (t, Ty::Null) => t,
                    _ if comparable(ta, tb) => Ty::Dyn,
                    _ => {
                        return Err(self.err(
                            self.start_col(b),
                            format!("the two branches of ?: differ: {} and {}", ta.a(), tb.a()),
                        ));
                    }
                };
                Ok((Node::Cond(Box::new([c, na, nb])), t))
            }
            ("_[_]", None, [a, i]) => self.index(op_col, a, i, d),
            (name, target, args) if is_operator(name) => Err(self.err(
                op_col,
                format!(
                    "unsupported operator {name} with {} operands",
                    args.len() + usize::from(target.is_some())
                ),
            )),
            (name, target, args) => self.function(e, name, target, args, d),
        }
    }

    /// An operand that must be a condition.
    fn cond(&mut self, e: &IdedExpr, depth: usize) -> Result<Node, FilterError> {
        let (n, t) = self.expr(e, depth)?;
        if !t.is_cond() {
            return Err(self.err(
                self.start_col(e),
                format!(
                    "expected a condition (true or false), found {}; compare it, as in x == 1",
                    t.a()
                ),
            ));
        }
        Ok(n)
    }

    fn logic(&mut self, and: bool, a: &IdedExpr, b: &IdedExpr, depth: usize) -> Compiled {
        let mut terms = Vec::new();
        for e in [a, b] {
            match (self.cond(e, depth)?, and) {
                (Node::And(ts), true) | (Node::Or(ts), false) => terms.extend(ts.into_vec()),
                (n, _) => terms.push(n),
            }
        }
        // The terms cannot fail or have effects, so their order is free:
        // cheap ones first lets the JSON form be built only when needed.
        terms.sort_by_key(cost);
        let terms = terms.into_boxed_slice();
        Ok((
            if and {
                Node::And(terms)
            } else {
                Node::Or(terms)
            },
            Ty::Bool,
        ))
    }

    fn compare(&mut self, op: CmpOp, a: &IdedExpr, b: &IdedExpr, depth: usize) -> Compiled {
        let (na, ta) = self.expr(a, depth)?;
        let (nb, tb) = self.expr(b, depth)?;
        if matches!(op, CmpOp::Eq | CmpOp::Ne) {
            let known = match (&na, &nb) {
                (Node::Field(Field::Protocol), Node::Const(Const::Str(s))) => Some((s, b)),
                (Node::Const(Const::Str(s)), Node::Field(Field::Protocol)) => Some((s, a)),
                _ => None,
            };
            if let Some((name, lit)) = known
                && name.as_ref() != "unknown"
            {
                let is = Node::IsProtocol(self.protocol(name, lit)?);
                return Ok((
                    if op == CmpOp::Eq {
                        is
                    } else {
                        Node::Not(Box::new(is))
                    },
                    Ty::Bool,
                ));
            }
        }
        // A timestamp compares with an RFC 3339 literal: `ts > "2026-…Z"`.
        let (na, ta) = self.as_timestamp(na, ta, tb, a)?;
        let (nb, tb) = self.as_timestamp(nb, tb, ta, b)?;
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            for (t, e) in [(ta, a), (tb, b)] {
                if !orderable(t) {
                    return Err(self.err(
                        self.start_col(e),
                        format!(
                            "cannot order {}: only numbers, strings, timestamps and durations have an order",
                            t.a()
                        ),
                    ));
                }
            }
        }
        if !comparable(ta, tb) {
            return Err(self.err(
                self.start_col(b),
                format!("cannot compare {} with {}", ta.a(), tb.a()),
            ));
        }
        Ok((Node::Cmp(op, Box::new([na, nb])), Ty::Bool))
    }

    /// A string literal compared with a timestamp, read as one.
    fn as_timestamp(&self, n: Node, t: Ty, other: Ty, e: &IdedExpr) -> Compiled {
        match n {
            Node::Const(Const::Str(s)) if other == Ty::Ts => time::parse_timestamp(&s)
                .map(|ts| (Node::Const(Const::Ts(ts)), Ty::Ts))
                .map_err(|m| self.err(self.start_col(e), m)),
            n => Ok((n, t)),
        }
    }

    /// The code of a protocol named by a literal: a misspelt protocol is an
    /// error rather than a filter that matches nothing.
    fn protocol(&self, name: &str, lit: &IdedExpr) -> Result<i32, FilterError> {
        protocol_code(name).ok_or_else(|| {
            self.err(
                self.start_col(lit),
                format!("unknown protocol '{name}' (known: {})", protocol_names()),
            )
        })
    }

    /// `x in list`.
    fn member(&mut self, x: &IdedExpr, list: &IdedExpr, depth: usize) -> Compiled {
        let (nx, tx) = self.expr(x, depth)?;
        let (nl, tl) = self.expr(list, depth)?;
        match tl {
            Ty::List(elem) if !comparable(tx, elem.ty()) => {
                return Err(self.err(
                    self.start_col(x),
                    format!(
                        "cannot look for {} in a list of {}",
                        tx.a(),
                        elem.ty().plural()
                    ),
                ));
            }
            Ty::Map if !tx.is_text() => {
                return Err(self.err(
                    self.start_col(x),
                    format!("map keys are strings, not {}", tx.a()),
                ));
            }
            Ty::List(_) | Ty::Map | Ty::Dyn => {}
            _ => {
                return Err(self.err(
                    self.start_col(list),
                    format!("'in' needs a list or a map on its right, not {}", tl.a()),
                ));
            }
        }
        let Node::List(items) = nl else {
            return Ok((Node::In(Box::new([nx, nl])), Ty::Bool));
        };
        let consts: Option<Vec<Const>> = items
            .iter()
            .map(|i| match i {
                Node::Const(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let Some(consts) = consts else {
            return Ok((Node::In(Box::new([nx, Node::List(items)])), Ty::Bool));
        };
        if let Node::Field(Field::Protocol) = nx
            && let Expr::List(l) = &list.expr
        {
            let mut codes = Vec::new();
            for (c, e) in consts.iter().zip(&l.elements) {
                if let Const::Str(name) = c
                    && name.as_ref() != "unknown"
                {
                    codes.push(Node::IsProtocol(self.protocol(name, e)?));
                } else {
                    return Ok((Node::InConst(Box::new(nx), consts.into()), Ty::Bool));
                }
            }
            return Ok((Node::Or(codes.into()), Ty::Bool));
        }
        Ok((Node::InConst(Box::new(nx), consts.into()), Ty::Bool))
    }

    fn arith(
        &mut self,
        op: ArithOp,
        op_col: usize,
        a: &IdedExpr,
        b: &IdedExpr,
        depth: usize,
    ) -> Compiled {
        use ArithOp::*;
        let (na, ta) = self.expr(a, depth)?;
        let (nb, tb) = self.expr(b, depth)?;
        let t = match (op, ta, tb) {
            (_, Ty::Dyn, _) | (_, _, Ty::Dyn) => Ty::Dyn,
            (_, Ty::Num, Ty::Num) => Ty::Num,
            (Add, Ty::Ts, Ty::Dur) | (Add, Ty::Dur, Ty::Ts) | (Sub, Ty::Ts, Ty::Dur) => Ty::Ts,
            (Sub, Ty::Ts, Ty::Ts) | (Add | Sub, Ty::Dur, Ty::Dur) => Ty::Dur,
            (Add, Ty::Str, Ty::Str) => Ty::Str,
            _ => {
                let sym = match op {
                    Add => "+",
                    Sub => "-",
                    Mul => "*",
                    Div => "/",
                    Rem => "%",
                };
                return Err(self.err(
                    op_col,
                    format!("cannot apply '{sym}' to {} and {}", ta.a(), tb.a()),
                ));
            }
        };
        Ok((Node::Arith(op, Box::new([na, nb])), t))
    }

    /// `a[i]`.
    fn index(&mut self, op_col: usize, a: &IdedExpr, i: &IdedExpr, depth: usize) -> Compiled {
        let (na, ta) = self.expr(a, depth)?;
        let (ni, ti) = self.expr(i, depth)?;
        match (na, ta, ni) {
            (Node::Field(Field::Headers(dir)), _, Node::Const(Const::Str(name))) => {
                Ok((Node::Header(dir, name.to_ascii_lowercase().into()), Ty::Str))
            }
            (Node::Json(path), _, Node::Const(Const::Str(k))) => {
                Ok((Node::Json(extend(path, Seg::Key(k))), Ty::Dyn))
            }
            (Node::Json(path), _, Node::Const(Const::Int(i))) => {
                Ok((Node::Json(extend(path, Seg::Index(i))), Ty::Dyn))
            }
            (na, Ty::Map, ni) if ti.is_text() => Ok((Node::Index(Box::new([na, ni])), Ty::Str)),
            (na, Ty::List(elem), ni) if matches!(ti, Ty::Num | Ty::Dyn) => {
                Ok((Node::Index(Box::new([na, ni])), elem.ty()))
            }
            (na, Ty::Dyn, ni) => Ok((Node::Index(Box::new([na, ni])), Ty::Dyn)),
            (_, Ty::Map | Ty::List(_), _) => Err(self.err(
                self.start_col(i),
                format!("cannot index {} with {}", ta.a(), ti.a()),
            )),
            (_, t, _) => Err(self.err(op_col, format!("cannot index {}", t.a()))),
        }
    }

    fn function(
        &mut self,
        e: &IdedExpr,
        name: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
        depth: usize,
    ) -> Compiled {
        let col = self.call_col(e, name);
        let arity = |n: usize| -> Result<(), FilterError> {
            if args.len() == n {
                return Ok(());
            }
            let s = if n == 1 { "" } else { "s" };
            Err(FilterError::new(
                col,
                format!("{name}() takes {n} argument{s}, not {}", args.len()),
            ))
        };
        match (name, target) {
            ("has", None) => {
                arity(1)?;
                if !matches!(args[0].expr, Expr::Ident(_) | Expr::Select(_)) {
                    return Err(self.err(
                        self.start_col(&args[0]),
                        "has() takes a field, as in has(src.pod)",
                    ));
                }
                let (n, _) = self.expr(&args[0], depth)?;
                Ok((Node::Has(Box::new(n)), Ty::Bool))
            }
            ("size", None) | ("size", Some(_)) => {
                let x = match target {
                    Some(t) => {
                        arity(0)?;
                        t
                    }
                    None => {
                        arity(1)?;
                        &args[0]
                    }
                };
                let (n, t) = self.expr(x, depth)?;
                if !matches!(t, Ty::Str | Ty::List(_) | Ty::Map | Ty::Dyn) {
                    return Err(self.err(
                        self.start_col(x),
                        format!("size() takes a string, a list or a map, not {}", t.a()),
                    ));
                }
                Ok((Node::Size(Box::new(n)), Ty::Num))
            }
            ("now", None) => {
                arity(0)?;
                Ok((Node::Now, Ty::Ts))
            }
            ("duration" | "timestamp", None) => {
                arity(1)?;
                let (conv, ty) = if name == "duration" {
                    (Conversion::Duration, Ty::Dur)
                } else {
                    (Conversion::Timestamp, Ty::Ts)
                };
                if let Expr::Literal(LiteralValue::String(s)) = &args[0].expr {
                    let parsed = if name == "duration" {
                        time::parse_duration(s.inner()).map(Const::Dur)
                    } else {
                        time::parse_timestamp(s.inner()).map(Const::Ts)
                    };
                    return parsed
                        .map(|c| (Node::Const(c), ty))
                        .map_err(|m| self.err(self.start_col(&args[0]), m));
                }
                let (n, t) = self.expr(&args[0], depth)?;
                let ok = match conv {
                    Conversion::Duration => matches!(t, Ty::Str | Ty::Dur | Ty::Dyn),
                    _ => matches!(t, Ty::Str | Ty::Ts | Ty::Num | Ty::Dyn),
                };
                if !ok {
                    return Err(self.err(
                        self.start_col(&args[0]),
                        format!("{name}() takes a string, not {}", t.a()),
                    ));
                }
                Ok((Node::Convert(conv, Box::new(n)), ty))
            }
            ("int" | "uint" | "double" | "string", None) => {
                arity(1)?;
                let (n, t) = self.expr(&args[0], depth)?;
                if matches!(t, Ty::List(_) | Ty::Map | Ty::Null) {
                    return Err(self.err(
                        self.start_col(&args[0]),
                        format!("{name}() cannot convert {}", t.a()),
                    ));
                }
                let (conv, ty) = match name {
                    "int" => (Conversion::Int, Ty::Num),
                    "uint" => (Conversion::UInt, Ty::Num),
                    "double" => (Conversion::Double, Ty::Num),
                    _ => (Conversion::String, Ty::Str),
                };
                Ok((Node::Convert(conv, Box::new(n)), ty))
            }
            ("matches", None) => {
                arity(2)?;
                self.matches(&args[0], &args[1], depth)
            }
            ("matches", Some(t)) => {
                arity(1)?;
                self.matches(t, &args[0], depth)
            }
            ("contains" | "startsWith" | "endsWith", Some(t)) => {
                arity(1)?;
                let op = match name {
                    "contains" => StrOp::Contains,
                    "startsWith" => StrOp::StartsWith,
                    _ => StrOp::EndsWith,
                };
                let s = self.text(name, t, depth)?;
                let x = self.text(name, &args[0], depth)?;
                Ok((Node::Str(op, Box::new([s, x])), Ty::Bool))
            }
            ("exists" | "all" | "exists_one" | "existsOne", Some(t)) => {
                arity(2)?;
                let q = match name {
                    "exists" => Quantifier::Exists,
                    "all" => Quantifier::All,
                    _ => Quantifier::ExistsOne,
                };
                let Expr::Ident(var) = &args[0].expr else {
                    return Err(self.err(
                        self.start_col(&args[0]),
                        format!("{name}() takes a variable name first, as in flags.{name}(f, f == \"gap\")"),
                    ));
                };
                let (range, tr) = self.expr(t, depth)?;
                let elem = match tr {
                    Ty::List(elem) => elem.ty(),
                    Ty::Map => Ty::Str,
                    Ty::Dyn => Ty::Dyn,
                    _ => {
                        return Err(self.err(
                            self.start_col(t),
                            format!("{name}() needs a list or a map, not {}", tr.a()),
                        ));
                    }
                };
                self.vars.push((var.clone(), elem));
                let pred = self.cond(&args[1], depth);
                self.vars.pop();
                Ok((Node::Quant(q, Box::new([range, pred?])), Ty::Bool))
            }
            ("map" | "filter" | "transformList" | "transformMap", Some(_)) => Err(self.err(
                col,
                format!("{name}() is not supported in filters; use exists() or all()"),
            )),
            ("contains" | "startsWith" | "endsWith" | "exists" | "all" | "exists_one", None) => {
                Err(self.err(
                    col,
                    format!("{name}() is called on a value, as in x.{name}(…)"),
                ))
            }
            (
                "has" | "now" | "duration" | "timestamp" | "int" | "uint" | "double" | "string",
                Some(_),
            ) => Err(self.err(
                col,
                format!("{name}() is not a method: call it as {name}(…)"),
            )),
            _ => Err(self.err(
                col,
                format!("unknown function '{name}' (known: {FUNCTIONS})"),
            )),
        }
    }

    /// An operand of a string function.
    fn text(&mut self, func: &str, e: &IdedExpr, depth: usize) -> Result<Node, FilterError> {
        let (n, t) = self.expr(e, depth)?;
        if !t.is_text() {
            return Err(self.err(
                self.start_col(e),
                format!("{func}() works on strings, not {}", t.a()),
            ));
        }
        Ok(n)
    }

    fn matches(&mut self, s: &IdedExpr, pattern: &IdedExpr, depth: usize) -> Compiled {
        let n = self.text("matches", s, depth)?;
        if let Expr::Literal(LiteralValue::String(p)) = &pattern.expr {
            let re = regex::RegexBuilder::new(p.inner())
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    self.err(
                        self.start_col(pattern),
                        format!("invalid regular expression: {}", regex_reason(&e)),
                    )
                })?;
            return Ok((Node::Matches(Box::new(n), re), Ty::Bool));
        }
        let p = self.text("matches", pattern, depth)?;
        Ok((Node::MatchesDyn(Box::new([n, p])), Ty::Bool))
    }
}

/// The line of the regex crate's message that says what is wrong.
fn regex_reason(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(s)
            .to_string(),
        regex::Error::CompiledTooBig(_) => "too large".to_string(),
        other => other.to_string(),
    }
}

/// A JSON path one step longer: `request.questions` and `[0]`.
fn extend(path: Box<[Seg]>, seg: Seg) -> Box<[Seg]> {
    let mut path = path.into_vec();
    path.push(seg);
    path.into()
}

fn is_operator(name: &str) -> bool {
    name.starts_with(['_', '!', '-', '@'])
}

/// A rough cost of evaluating a node, to run cheap conditions first.
fn cost(n: &Node) -> u32 {
    let sum = |ns: &[Node]| ns.iter().map(cost).fold(1u32, u32::saturating_add);
    match n {
        Node::Json(_) => 1000,
        Node::MatchesDyn(args) => 500u32.saturating_add(sum(&**args)),
        Node::Quant(_, args) => 50u32.saturating_add(sum(&**args)),
        Node::Matches(a, _) => 20u32.saturating_add(cost(a)),
        Node::Header(..) => 5,
        Node::Const(_) | Node::Field(_) | Node::IsProtocol(_) | Node::Var(_) | Node::Now => 1,
        Node::List(ns) | Node::And(ns) | Node::Or(ns) => sum(ns),
        Node::InConst(a, cs) => cost(a).saturating_add(u32::try_from(cs.len()).unwrap_or(u32::MAX)),
        Node::Not(a) | Node::Neg(a) | Node::Select(a, _) | Node::Has(a) | Node::Size(a) => {
            1u32.saturating_add(cost(a))
        }
        Node::Convert(_, a) => 5u32.saturating_add(cost(a)),
        Node::Cond(args) => sum(&**args),
        Node::Cmp(_, args)
        | Node::In(args)
        | Node::Arith(_, args)
        | Node::Index(args)
        | Node::Str(_, args) => sum(&**args),
    }
}
