//! Lowering of terms to Z3 formulas: strings and regular expressions for names and patterns,
//! 128-bit vectors with a v6 flag for IP addresses, integers for numbers, dates, the
//! principal kind, the action index and value counts. Variables are created on first use,
//! each with its range constraints.

use std::collections::BTreeMap;

use z3::ast::{Bool, Int, Regexp, BV};

use crate::actions;
use crate::compiler::KeyShape;
use crate::term::{Cmp, Part, Shape, StrVar, Term};
use crate::values::{Seg, Template};

/// The Z3 variables of one analysis, created lazily.
pub struct Encoder<'k> {
    keys: &'k BTreeMap<String, KeyShape>,
    pub(crate) kind: Option<Int>,
    pub(crate) action: Option<Int>,
    pub(crate) strs: BTreeMap<StrVar, z3::ast::String>,
    pub(crate) present: BTreeMap<String, Bool>,
    pub(crate) count: BTreeMap<String, Int>,
    pub(crate) ips: BTreeMap<(String, usize), (Bool, BV)>,
    pub(crate) ints: BTreeMap<(String, usize), Int>,
    /// Range constraints of the variables created so far (valid in every question).
    pub(crate) side: Vec<Bool>,
    /// String variables compared with a wildcard pattern or built by concatenation: their
    /// shape (12-digit account, ...) must be asserted. The others only meet literals, and the
    /// decoder may replace an ill-shaped model value by a fresh well-shaped one.
    pub(crate) pattern_vars: std::collections::BTreeSet<StrVar>,
    /// The literals each string variable is compared with.
    pub(crate) literals: BTreeMap<StrVar, std::collections::BTreeSet<String>>,
    opaque: usize,
}

fn str_var_name(v: &StrVar) -> String {
    match v {
        StrVar::Slot(k, i) => format!("key:{k}#{i}"),
        other => format!("{other:?}"),
    }
}

impl<'k> Encoder<'k> {
    /// A fresh encoder over the key table of a compiled policy.
    pub fn new(keys: &'k BTreeMap<String, KeyShape>) -> Self {
        Encoder {
            keys,
            kind: None,
            action: None,
            strs: BTreeMap::new(),
            present: BTreeMap::new(),
            count: BTreeMap::new(),
            ips: BTreeMap::new(),
            ints: BTreeMap::new(),
            side: Vec::new(),
            pattern_vars: Default::default(),
            literals: BTreeMap::new(),
            opaque: 0,
        }
    }

    pub(crate) fn kind(&mut self) -> Int {
        if self.kind.is_none() {
            let k = Int::new_const("principal_kind");
            self.side.push(k.ge(0i64));
            self.side.push(k.le(4i64));
            self.kind = Some(k);
        }
        self.kind.clone().unwrap_or_else(|| Int::from_i64(0))
    }

    pub(crate) fn action(&mut self) -> Int {
        if self.action.is_none() {
            let a = Int::new_const("action");
            self.side.push(a.ge(0i64));
            self.side.push(a.lt(actions::count() as i64));
            self.action = Some(a);
        }
        self.action.clone().unwrap_or_else(|| Int::from_i64(0))
    }

    pub(crate) fn string(&mut self, v: &StrVar) -> z3::ast::String {
        self.strs.entry(v.clone()).or_insert_with(|| z3::ast::String::new_const(str_var_name(v))).clone()
    }

    pub(crate) fn present(&mut self, key: &str) -> Bool {
        self.present.entry(key.to_owned()).or_insert_with(|| Bool::new_const(format!("present:{key}"))).clone()
    }

    pub(crate) fn count(&mut self, key: &str) -> Int {
        if !self.count.contains_key(key) {
            let c = Int::new_const(format!("count:{key}"));
            let slots = self.keys.get(key).map_or(1, |s| s.slots) as i64;
            // A key present in a request carries at least one value.
            let present = self.present(key);
            self.side.push(Bool::or(&[present.not(), c.ge(1i64)]));
            self.side.push(c.ge(0i64));
            self.side.push(c.le(slots));
            self.count.insert(key.to_owned(), c);
        }
        self.count[key].clone()
    }

    pub(crate) fn ip(&mut self, key: &str, slot: usize) -> (Bool, BV) {
        let id = (key.to_owned(), slot);
        if !self.ips.contains_key(&id) {
            let v6 = Bool::new_const(format!("ipv6:{key}#{slot}"));
            let bits = BV::new_const(format!("ip:{key}#{slot}"), 128);
            // An IPv4 address lives in the low 32 bits.
            self.side.push(Bool::or(&[v6.clone(), bits.extract(127, 32).eq(BV::from_u64(0, 96))]));
            self.ips.insert(id.clone(), (v6, bits));
        }
        self.ips[&id].clone()
    }

    /// `x` matches the pattern, as `x = L0 ++ y1 ++ L1 ++ ...` with fresh pieces `yi` for the
    /// wildcards (`?` pieces have length 1). Only valid in positive polarity, where the pieces
    /// are existentially quantified; Z3 4.8.12 solves these far faster than regexes.
    fn glob_by_concat(&mut self, x: &z3::ast::String, pat: &Template) -> Bool {
        let mut pieces: Vec<z3::ast::String> = Vec::new();
        let mut side: Vec<Bool> = Vec::new();
        for seg in &pat.0 {
            match seg {
                Seg::Lit(l) => pieces.push(z3_str(l)),
                Seg::Star | Seg::Any => {
                    self.opaque += 1;
                    let y = z3::ast::String::new_const(format!("piece#{}", self.opaque));
                    if *seg == Seg::Any {
                        side.push(y.length().eq(Int::from_i64(1)));
                    }
                    pieces.push(y);
                }
                Seg::Var(_) => return Bool::from_bool(false),
            }
        }
        let whole = match pieces.len() {
            0 => z3_str(""),
            1 => pieces[0].clone(),
            _ => z3::ast::String::concat(&pieces),
        };
        side.push(x.eq(whole));
        Bool::and(&side)
    }

    pub(crate) fn int(&mut self, key: &str, slot: usize) -> Int {
        self.ints.entry((key.to_owned(), slot)).or_insert_with(|| Int::new_const(format!("int:{key}#{slot}"))).clone()
    }

    /// Lowers a term that is asserted (positive polarity).
    pub fn lower(&mut self, t: &Term) -> Bool {
        self.lower_in(t, true)
    }

    /// Lowers a term; `positive` says whether it occurs under an even number of negations,
    /// where a wildcard match may introduce fresh existential pieces.
    fn lower_in(&mut self, t: &Term, positive: bool) -> Bool {
        match t {
            Term::Const(b) => Bool::from_bool(*b),
            Term::Not(inner) => self.lower_in(inner, !positive).not(),
            Term::And(ts) => {
                let parts: Vec<Bool> = ts.iter().map(|t| self.lower_in(t, positive)).collect();
                Bool::and(&parts)
            }
            Term::Or(ts) => {
                let parts: Vec<Bool> = ts.iter().map(|t| self.lower_in(t, positive)).collect();
                Bool::or(&parts)
            }
            Term::KindIs(k) => self.kind().eq(Int::from_i64(*k as i64)),
            Term::ActionIn(ranges) => {
                let a = self.action();
                let parts: Vec<Bool> = ranges
                    .iter()
                    .map(|&(lo, hi)| {
                        if lo == hi {
                            a.eq(Int::from_i64(lo as i64))
                        } else {
                            Bool::and(&[a.ge(lo as i64), a.le(hi as i64)])
                        }
                    })
                    .collect();
                Bool::or(&parts)
            }
            Term::Match { var, pat, ignore_case } => {
                let s = self.string(var);
                if let (Some(lit), false) = (pat.as_literal(), *ignore_case) {
                    self.literals.entry(var.clone()).or_default().insert(lit);
                } else {
                    self.pattern_vars.insert(var.clone());
                }
                match (pat.as_literal(), star_chunks(pat)) {
                    (Some(lit), _) if !ignore_case => s.eq(z3_str(&lit)),
                    (Some(lit), _) => literal_ignoring_case(&s, &lit),
                    _ if positive && !ignore_case => self.glob_by_concat(&s, pat),
                    (_, Some(chunks)) if !ignore_case && chunks.len() <= 3 => glob_by_sequences(&s, &chunks),
                    _ => s.regex_matches(&regex(pat, *ignore_case)),
                }
            }
            Term::Concat { var, parts, prefix } => {
                self.pattern_vars.insert(var.clone());
                for p in parts {
                    if let Part::Var(v) = p {
                        self.pattern_vars.insert(v.clone());
                    }
                }
                let s = self.string(var);
                let pieces: Vec<z3::ast::String> = parts
                    .iter()
                    .map(|p| match p {
                        Part::Lit(l) => z3_str(l),
                        Part::Var(v) => self.string(v),
                    })
                    .collect();
                let whole = if pieces.len() == 1 { pieces[0].clone() } else { z3::ast::String::concat(&pieces) };
                if *prefix {
                    whole.prefix(&s)
                } else {
                    s.eq(whole)
                }
            }
            Term::Shaped(var, shape) => {
                let s = self.string(var);
                match shape {
                    Shape::ObjectKey => s.length().ge(1i64),
                    _ => s.regex_matches(&shape_regex(*shape)),
                }
            }
            Term::Present(k) => self.present(k),
            Term::CountGt(k, n) => self.count(k).gt(*n as i64),
            Term::CountEq(k, n) => self.count(k).eq(Int::from_i64(*n as i64)),
            Term::IpIn { key, slot, cidr } => {
                let (v6, bits) = self.ip(key, *slot);
                let mask = BV::from_str(128, &cidr.mask().to_string()).unwrap_or_else(|| BV::from_u64(0, 128));
                let net = BV::from_str(128, &cidr.net.to_string()).unwrap_or_else(|| BV::from_u64(0, 128));
                let family = if cidr.v6 { v6 } else { v6.not() };
                Bool::and(&[family, bits.bvand(&mask).eq(net)])
            }
            Term::IntCmp { key, slot, cmp, value } => {
                let x = self.int(key, *slot);
                let v = *value;
                match cmp {
                    Cmp::Eq => x.eq(Int::from_i64(v)),
                    Cmp::Lt => x.lt(v),
                    Cmp::Le => x.le(v),
                    Cmp::Gt => x.gt(v),
                    Cmp::Ge => x.ge(v),
                }
            }
            Term::Opaque(_) => {
                self.opaque += 1;
                Bool::new_const(format!("opaque#{}", self.opaque))
            }
        }
    }
}

/// The literal chunks between the `*`s of a pattern without `?` (empty inner chunks dropped).
fn star_chunks(pat: &Template) -> Option<Vec<String>> {
    let mut chunks = vec![String::new()];
    for seg in &pat.0 {
        match seg {
            Seg::Lit(l) => chunks.last_mut()?.push_str(l),
            Seg::Star => chunks.push(String::new()),
            Seg::Any | Seg::Var(_) => return None,
        }
    }
    let last = chunks.len() - 1;
    let mut out: Vec<String> = Vec::new();
    for (i, c) in chunks.into_iter().enumerate() {
        if c.is_empty() && i != 0 && i != last {
            continue;
        }
        out.push(c);
    }
    if out.len() == 2 && out[0].is_empty() && out[1].is_empty() && pat.0.is_empty() {
        return None;
    }
    Some(out)
}

/// `x` matches `L0*L1` or `L0*L1*L2`, written with prefix, suffix, length and containment
/// instead of a regular expression: Z3 4.8.12's regex engine is very slow on `.*` followed by
/// a long literal, and these are exact and safe under negation (no fresh variables).
fn glob_by_sequences(x: &z3::ast::String, chunks: &[String]) -> Bool {
    let len = |s: &str| s.chars().count() as i64;
    let lit = z3_str;
    let first = &chunks[0];
    let last = &chunks[chunks.len() - 1];
    let total: i64 = chunks.iter().map(|c| len(c)).sum();
    let mut parts = Vec::new();
    if !first.is_empty() && !last.is_empty() || chunks.len() == 3 {
        parts.push(x.length().ge(total));
    }
    // `substr` equalities rather than `prefixof`/`suffixof`: much faster in Z3 4.8.12 under
    // negation, and a too-short string simply fails them.
    if !first.is_empty() {
        parts.push(x.substr(Int::from_i64(0), Int::from_i64(len(first))).eq(lit(first)));
    }
    if !last.is_empty() {
        let n = len(last);
        parts.push(x.substr(x.length() - Int::from_i64(n), Int::from_i64(n)).eq(lit(last)));
    }
    if chunks.len() == 3 && !chunks[1].is_empty() {
        let (a, c) = (len(first), len(last));
        let middle = x.substr(Int::from_i64(a), x.length() - Int::from_i64(a + c));
        parts.push(middle.contains(lit(&chunks[1])));
    }
    if parts.is_empty() {
        return Bool::from_bool(true);
    }
    Bool::and(&parts)
}

/// Z3 4.8.12 reads string constants with escapes and only printable ASCII: every other
/// character (and the backslash) is passed as a `\u{...}` escape.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (' '..='~').contains(&c) && c != '\\' {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    out
}

/// A Z3 string constant.
pub(crate) fn z3_str(s: &str) -> z3::ast::String {
    z3::ast::String::from(escape(s).as_str())
}

/// `x` equals `lit` ignoring case, character by character (each letter one of its two
/// cases): Z3 4.8.12's regex engine takes seconds on a long case-insensitive literal, and
/// does not stop at the time limit while it does.
fn literal_ignoring_case(x: &z3::ast::String, lit: &str) -> Bool {
    let chars: Vec<char> = lit.chars().collect();
    let mut parts = vec![x.length().eq(Int::from_i64(chars.len() as i64))];
    for (i, c) in chars.iter().enumerate() {
        let at = x.at(Int::from_i64(i as i64));
        let lower: Vec<char> = c.to_lowercase().collect();
        let upper: Vec<char> = c.to_uppercase().collect();
        parts.push(if lower.len() == 1 && upper.len() == 1 && lower[0] != upper[0] {
            Bool::or(&[at.eq(z3_str(&lower[0].to_string())), at.eq(z3_str(&upper[0].to_string()))])
        } else {
            at.eq(z3_str(&c.to_string()))
        });
    }
    Bool::and(&parts)
}

/// A regular expression for a literal string.
fn re_lit(s: &str) -> Regexp {
    Regexp::literal(&escape(s))
}

/// Exactly one character, any character. Z3 4.8.12 has no `re.allchar` in its C API, so it is
/// built as "not empty and not two or more characters".
pub fn any_char() -> Regexp {
    let non_empty = Regexp::literal("").complement();
    let two_or_more = Regexp::concat(&[non_empty.clone(), non_empty.clone()]);
    Regexp::intersect(&[non_empty, two_or_more.complement()])
}

fn char_re(c: char, ignore_case: bool) -> Regexp {
    let lower: Vec<char> = c.to_lowercase().collect();
    let upper: Vec<char> = c.to_uppercase().collect();
    if ignore_case && lower.len() == 1 && upper.len() == 1 && lower[0] != upper[0] {
        Regexp::union(&[Regexp::range(&lower[0], &lower[0]), Regexp::range(&upper[0], &upper[0])])
    } else {
        re_lit(&c.to_string())
    }
}

/// The regular expression of a variable-free template.
pub fn regex(pat: &Template, ignore_case: bool) -> Regexp {
    let mut parts: Vec<Regexp> = Vec::new();
    for seg in &pat.0 {
        match seg {
            Seg::Lit(l) if ignore_case => parts.extend(l.chars().map(|c| char_re(c, true))),
            Seg::Lit(l) => parts.push(re_lit(l)),
            Seg::Star => parts.push(Regexp::full()),
            Seg::Any => parts.push(any_char()),
            // Variables never reach here (the compiler turns them into concatenations).
            Seg::Var(_) => parts.push(Regexp::empty()),
        }
    }
    match parts.len() {
        0 => Regexp::literal(""),
        1 => parts.pop().unwrap_or_else(|| Regexp::literal("")),
        _ => Regexp::concat(&parts),
    }
}

/// The characters besides ASCII letters and digits an IAM user or role name may hold.
pub(crate) const IAM_NAME_PUNCTUATION: &str = "+=,.@_-";

fn shape_regex(shape: Shape) -> Regexp {
    let r = |a: char, b: char| Regexp::range(&a, &b);
    match shape {
        Shape::AccountId => r('0', '9').r#loop(12, 12),
        Shape::ArnTail => {
            // IAM user and role names: letters, digits and `+=,.@_-`.
            let mut chars = vec![r('a', 'z'), r('A', 'Z'), r('0', '9')];
            chars.extend(IAM_NAME_PUNCTUATION.chars().map(|c| Regexp::literal(&c.to_string())));
            let name = Regexp::union(&chars).plus();
            Regexp::union(&[
                Regexp::literal("root"),
                Regexp::concat(&[Regexp::literal("role/"), name.clone()]),
                Regexp::concat(&[Regexp::literal("user/"), name]),
            ])
        }
        Shape::OaiId => Regexp::union(&[r('A', 'Z'), r('0', '9')]).plus(),
        Shape::ServiceName => Regexp::concat(&[
            Regexp::union(&[r('a', 'z'), r('0', '9'), Regexp::literal("-"), Regexp::literal(".")]).plus(),
            Regexp::literal(".amazonaws.com"),
        ]),
        Shape::ObjectKey => Regexp::concat(&[any_char(), Regexp::full()]),
        Shape::CanonicalId => Regexp::union(&[r('0', '9'), r('a', 'f')]).plus(),
        Shape::Federated => Regexp::union(&[
            Regexp::literal("cognito-identity.amazonaws.com"),
            Regexp::literal("www.amazon.com"),
            Regexp::literal("graph.facebook.com"),
            Regexp::literal("accounts.google.com"),
            Regexp::concat(&[
                Regexp::literal("arn:aws:iam::"),
                r('0', '9').r#loop(12, 12),
                Regexp::union(&[Regexp::literal(":saml-provider/"), Regexp::literal(":oidc-provider/")]),
                Regexp::union(&[r('a', 'z'), r('A', 'Z'), r('0', '9'), Regexp::literal(".")]).plus(),
            ]),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use z3::{SatResult, Solver};

    use super::*;
    use crate::term::{not, StrVar, Term};

    /// Every encoding of a wildcard match (concatenation in positive polarity, sequences or
    /// regular expressions in negative polarity) agrees with the concrete matcher.
    #[test]
    fn glob_encodings_agree_with_concrete_matching() {
        let patterns = ["a*", "*a", "a*b", "*a*", "a*b*c", "a?c", "*", "ab", "a*b*c*d", "?", "x*:y/*z"];
        let texts = ["", "a", "ab", "abc", "acb", "aXbYc", "abcd", "x:y/z", "x1:y/2z", "ba", "a\u{7f}c", "a¿c"];
        let keys = BTreeMap::new();
        for p in patterns {
            let pat = Template::parse(p, true, false);
            for text in texts {
                let concrete = pat.matches(text, false);
                for ignore_case in [false, true] {
                    let m = Term::Match { var: StrVar::Key, pat: pat.clone(), ignore_case };
                    for (term, want) in [(m.clone(), concrete), (not(m), !concrete)] {
                        let mut enc = Encoder::new(&keys);
                        let f = enc.lower(&term);
                        let x = enc.string(&StrVar::Key);
                        let solver = Solver::new();
                        solver.assert(x.eq(z3_str(text)));
                        solver.assert(&f);
                        let got = solver.check() == SatResult::Sat;
                        assert_eq!(got, want, "pattern {p:?} text {text:?} term {term:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn star_chunks_split_on_stars() {
        let chunks = |p: &str| star_chunks(&Template::parse(p, true, false));
        assert_eq!(chunks("a*b"), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(chunks("a**b*"), Some(vec!["a".to_owned(), "b".to_owned(), String::new()]));
        assert_eq!(chunks("a?b"), None);
    }
}
