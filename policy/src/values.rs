//! Concrete values of the policy language: wildcard templates with policy variables, IP
//! addresses and CIDR blocks, numbers and dates.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// One piece of a pattern or value as written in a policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Seg {
    /// Literal text.
    Lit(String),
    /// `*`: any sequence of characters (only in wildcard positions).
    Star,
    /// `?`: exactly one character (only in wildcard positions).
    Any,
    /// `${key}`: the request's (first) value of a condition key, lowercased.
    Var(String),
}

/// A value or pattern split into literal text, wildcards and policy variables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Template(pub Vec<Seg>);

impl Template {
    /// Splits `s`; `wildcards` says whether `*`/`?` are wildcards, `variables` whether
    /// `${...}` is a policy variable (`${*}`, `${?}`, `${$}` are the literal characters).
    pub fn parse(s: &str, wildcards: bool, variables: bool) -> Template {
        let mut segs: Vec<Seg> = Vec::new();
        let push_lit = |segs: &mut Vec<Seg>, t: &str| {
            if let Some(Seg::Lit(prev)) = segs.last_mut() {
                prev.push_str(t);
            } else {
                segs.push(Seg::Lit(t.to_owned()));
            }
        };
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            if variables && rest.starts_with("${") {
                if let Some(end) = rest.find('}') {
                    let name = &rest[2..end];
                    match name {
                        "*" | "?" | "$" => push_lit(&mut segs, name),
                        _ => segs.push(Seg::Var(name.trim().to_ascii_lowercase())),
                    }
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            match c {
                '*' if wildcards => segs.push(Seg::Star),
                '?' if wildcards => segs.push(Seg::Any),
                _ => push_lit(&mut segs, &rest[..c.len_utf8()]),
            }
            rest = &rest[c.len_utf8()..];
        }
        Template(normalize_wildcard_runs(segs))
    }

    /// The literal text when the template has no wildcard and no variable.
    pub fn as_literal(&self) -> Option<String> {
        match self.0.as_slice() {
            [] => Some(String::new()),
            [Seg::Lit(s)] => Some(s.clone()),
            _ => None,
        }
    }

    /// True when the template holds a policy variable.
    pub fn has_variable(&self) -> bool {
        self.0.iter().any(|s| matches!(s, Seg::Var(_)))
    }

    /// Replaces the variables by the request's first value of their key; `None` when a key is
    /// absent or has no value (the pattern then matches nothing).
    pub fn resolve(&self, context: &BTreeMap<String, Vec<String>>) -> Option<Template> {
        let mut out = Vec::new();
        for seg in &self.0 {
            match seg {
                Seg::Var(key) => {
                    let v = context.get(key)?.first()?;
                    out.push(Seg::Lit(v.clone()));
                }
                other => out.push(other.clone()),
            }
        }
        Some(Template(out))
    }

    /// Matches `text` against a variable-free template.
    pub fn matches(&self, text: &str, ignore_case: bool) -> bool {
        let Some(pat) = self.pchars() else { return false };
        let text: Vec<char> = text.chars().collect();
        glob(&pat, &text, ignore_case)
    }
}

/// Rewrites every run of wildcards that holds a `*` as its `?`s followed by one `*` (the same
/// language: `*?*?` matches exactly what `??*` matches), so that hostile runs like `*****` or
/// `*?*?*?` cost one wildcard each in matching and in the solver.
fn normalize_wildcard_runs(segs: Vec<Seg>) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::with_capacity(segs.len());
    let (mut anys, mut star) = (0usize, false);
    let flush = |out: &mut Vec<Seg>, anys: &mut usize, star: &mut bool| {
        out.extend(std::iter::repeat_n(Seg::Any, *anys));
        if *star {
            out.push(Seg::Star);
        }
        (*anys, *star) = (0, false);
    };
    for seg in segs {
        match seg {
            Seg::Star => star = true,
            Seg::Any => anys += 1,
            other => {
                flush(&mut out, &mut anys, &mut star);
                out.push(other);
            }
        }
    }
    flush(&mut out, &mut anys, &mut star);
    out
}

#[derive(Clone, Copy)]
enum PChar {
    C(char),
    Star,
    Any,
}

fn glob(pat: &[PChar], text: &[char], ic: bool) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(PChar::Star) => {
                backtrack = Some((p, t));
                p += 1;
                continue;
            }
            Some(PChar::Any) => {
                p += 1;
                t += 1;
                continue;
            }
            Some(PChar::C(c)) if chars_eq(*c, text[t], ic) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((bp, bt)) => {
                p = bp + 1;
                t = bt + 1;
                backtrack = Some((bp, bt + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|c| matches!(c, PChar::Star))
}

fn chars_eq(a: char, b: char, ic: bool) -> bool {
    if ic {
        a.to_lowercase().eq(b.to_lowercase())
    } else {
        a == b
    }
}

impl Template {
    /// The patterns that what follows `prefix` must match for `prefix + rest` to match `self`
    /// (the derivative of a variable-free pattern by a literal prefix); empty when no string
    /// starting with `prefix` matches.
    ///
    /// Runs in `O(|prefix| × |pattern|)` time and `O(|pattern|)` memory whatever the mix of
    /// `*` and `?`: it tracks the set of pattern positions the prefix can reach (an NFA
    /// simulation), never the paths that reach them. There is at most one residual per
    /// position, so at most `|pattern| + 1` of them.
    pub fn residuals(&self, prefix: &str) -> Vec<Template> {
        let Some(pat) = self.pchars() else { return Vec::new() };
        let n = pat.len();
        // `live[p]`: the prefix read so far can leave `pat[p..]` to match.
        let mut live = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        live[0] = true;
        close_over_stars(&pat, &mut live);
        for ch in prefix.chars() {
            next.iter_mut().for_each(|x| *x = false);
            for p in 0..n {
                if !live[p] {
                    continue;
                }
                match pat[p] {
                    PChar::Star => next[p] = true,
                    PChar::Any => next[p + 1] = true,
                    PChar::C(c) if c == ch => next[p + 1] = true,
                    PChar::C(_) => {}
                }
            }
            close_over_stars(&pat, &mut next);
            std::mem::swap(&mut live, &mut next);
            if !live.iter().any(|&x| x) {
                return Vec::new();
            }
        }
        // `*X` already covers `X`: a position right after a live star adds nothing.
        (0..=n)
            .filter(|&p| live[p] && !(p > 0 && live[p - 1] && matches!(pat[p - 1], PChar::Star)))
            .map(|p| template_of(&pat[p..]))
            .collect()
    }

    /// The pattern as characters and wildcards; `None` when it holds a variable.
    fn pchars(&self) -> Option<Vec<PChar>> {
        let mut pat = Vec::new();
        for seg in &self.0 {
            match seg {
                Seg::Lit(s) => pat.extend(s.chars().map(PChar::C)),
                Seg::Star => pat.push(PChar::Star),
                Seg::Any => pat.push(PChar::Any),
                Seg::Var(_) => return None,
            }
        }
        Some(pat)
    }
}

/// Adds to `live` every position reachable by letting live `*`s match nothing.
fn close_over_stars(pat: &[PChar], live: &mut [bool]) {
    for p in 0..pat.len() {
        if live[p] && matches!(pat[p], PChar::Star) {
            live[p + 1] = true;
        }
    }
}

fn template_of(pat: &[PChar]) -> Template {
    let mut segs: Vec<Seg> = Vec::new();
    for &c in pat {
        match c {
            PChar::C(ch) => match segs.last_mut() {
                Some(Seg::Lit(l)) => l.push(ch),
                _ => segs.push(Seg::Lit(ch.to_string())),
            },
            PChar::Star => segs.push(Seg::Star),
            PChar::Any => segs.push(Seg::Any),
        }
    }
    Template(segs)
}

/// Wildcard match of a plain pattern (no variables).
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    Template::parse(pattern, true, false).matches(text, ignore_case)
}

/// An IP address: (is IPv6, value); IPv4 addresses occupy the low 32 bits.
pub type Ip = (bool, u128);

/// A CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Cidr {
    /// IPv6 block.
    pub v6: bool,
    /// Network address, host bits cleared.
    pub net: u128,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Address width in bits.
    pub fn width(&self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    /// The mask over the address width (as a u128).
    pub fn mask(&self) -> u128 {
        let w = u32::from(self.width());
        let host = w - u32::from(self.prefix);
        let full: u128 = if w == 128 { u128::MAX } else { (1u128 << w) - 1 };
        if host >= 128 {
            0
        } else {
            full & !((1u128 << host) - 1) & full
        }
    }

    /// True when `ip` lies in the block.
    pub fn contains(&self, ip: Ip) -> bool {
        ip.0 == self.v6 && (ip.1 & self.mask()) == self.net
    }

    /// True when `self` lies entirely inside `other`.
    pub fn within(&self, other: &Cidr) -> bool {
        self.v6 == other.v6 && self.prefix >= other.prefix && other.contains((self.v6, self.net))
    }

    /// Fixed in the sense of SEMANTICS.md: at least /8 (IPv4) or /32 (IPv6), or within an
    /// RFC 1918 private range.
    pub fn is_fixed(&self) -> bool {
        let private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
        if self.v6 {
            self.prefix >= 32
        } else {
            self.prefix >= 8 || private.iter().any(|p| parse_cidr(p).is_some_and(|c| self.within(&c)))
        }
    }
}

/// Parses an IPv4 or IPv6 address.
pub fn parse_ip(s: &str) -> Option<Ip> {
    let s = s.trim();
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        return Some((false, u128::from(u32::from(v4))));
    }
    s.parse::<Ipv6Addr>().ok().map(|v6| (true, u128::from(v6)))
}

/// Formats an IP address.
pub fn format_ip(ip: Ip) -> String {
    if ip.0 {
        Ipv6Addr::from(ip.1).to_string()
    } else {
        Ipv4Addr::from(u32::try_from(ip.1 & 0xffff_ffff).unwrap_or(0)).to_string()
    }
}

/// Parses `addr` or `addr/prefix`.
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (addr, prefix) = match s.trim().split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (s.trim(), None),
    };
    let (v6, value) = parse_ip(addr)?;
    let width = if v6 { 128 } else { 32 };
    let prefix = prefix.unwrap_or(width);
    if prefix > width {
        return None;
    }
    let mut c = Cidr { v6, net: 0, prefix };
    c.net = value & c.mask();
    Some(c)
}

/// Parses an integer (Numeric* operators).
pub fn parse_number(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

/// Parses a date as epoch seconds: integer epoch seconds, `YYYY-MM-DD`, or
/// `YYYY-MM-DDThh:mm[:ss[.fff]](Z|±hh:mm)`.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let num = |t: &str| -> Option<i64> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            t.parse().ok()
        }
    };
    let (date, time) = match s.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y = num(parts.next()?)?;
    let m = num(parts.next()?)?;
    let d = num(parts.next()?)?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Years of four digits (ISO 8601's range, and what IAM reads); beyond, the arithmetic
    // below would overflow and the date means nothing anyway.
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(time) = time {
        let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(pos) = time.rfind(['+', '-']) {
            let (c, off) = time.split_at(pos);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':').unwrap_or((&off[1..], "0"));
            let (oh, om) = (num(oh)?, num(om)?);
            if oh > 23 || om > 59 {
                return None;
            }
            (c, sign * (oh * 3600 + om * 60))
        } else {
            (time, 0)
        };
        let clock = clock.split('.').next()?;
        let mut hms = clock.split(':');
        let h = num(hms.next()?)?;
        let mi = num(hms.next()?)?;
        let sec = match hms.next() {
            Some(t) => num(t)?,
            None => 0,
        };
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + sec - offset;
    }
    Some(secs)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("s3:Get*", "s3:getobject", true));
        assert!(!wildcard_match("s3:Get*", "s3:getobject", false));
        assert!(wildcard_match("arn:aws:s3:::b/?x*", "arn:aws:s3:::b/axyz", false));
        assert!(!wildcard_match("arn:aws:s3:::b/?x*", "arn:aws:s3:::b/x", false));
        assert!(wildcard_match("*a*b", "xxaxxb", false));
        assert!(!wildcard_match("*a*b", "xxaxxbc", false));
    }

    #[test]
    fn templates() {
        let t = Template::parse("home/${aws:username}/${*}x*", true, true);
        assert_eq!(
            t.0,
            vec![Seg::Lit("home/".into()), Seg::Var("aws:username".into()), Seg::Lit("/*x".into()), Seg::Star]
        );
        let ctx = BTreeMap::from([("aws:username".to_owned(), vec!["bob".to_owned()])]);
        assert!(t.resolve(&ctx).unwrap().matches("home/bob/*xyz", false));
        assert!(t.resolve(&BTreeMap::new()).is_none());
    }

    #[test]
    fn residuals() {
        let t = Template::parse("arn:aws:s3:::b/private/*", true, false);
        assert_eq!(t.residuals("arn:aws:s3:::b/"), vec![Template::parse("private/*", true, false)]);
        let t = Template::parse("arn:aws:s3:::*", true, false);
        assert_eq!(t.residuals("arn:aws:s3:::b/"), vec![Template(vec![Seg::Star])]);
        let t = Template::parse("arn:aws:s3:::c/*", true, false);
        assert!(t.residuals("arn:aws:s3:::b/").is_empty());
        let t = Template::parse("*/x*", true, false);
        let r = t.residuals("a/");
        assert!(r.contains(&Template::parse("x*", true, false)) && r.contains(&Template::parse("*/x*", true, false)));
    }

    #[test]
    fn cidrs() {
        let c = parse_cidr("192.168.1.7/24").unwrap();
        assert!(c.contains(parse_ip("192.168.1.200").unwrap()));
        assert!(!c.contains(parse_ip("192.168.2.1").unwrap()));
        assert!(c.is_fixed());
        assert!(!parse_cidr("0.0.0.0/0").unwrap().is_fixed());
        assert!(parse_cidr("172.16.0.0/12").unwrap().is_fixed());
        assert!(!parse_cidr("2001:db8::/16").unwrap().is_fixed());
        let v6 = parse_cidr("2001:db8::/32").unwrap();
        assert!(v6.contains(parse_ip("2001:db8::1").unwrap()));
        assert!(!v6.contains(parse_ip("10.0.0.1").unwrap()));
        assert_eq!(format_ip(parse_ip("10.1.2.3").unwrap()), "10.1.2.3");
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().mask(), 0);
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-02"), Some(86_400));
        assert_eq!(parse_date("2020-01-01T00:00:00Z"), Some(1_577_836_800));
        assert_eq!(parse_date("2020-01-01T01:00:00+01:00"), Some(1_577_836_800));
        assert_eq!(parse_date("2020-01-01T00:00:00.123Z"), Some(1_577_836_800));
        assert_eq!(parse_date("1577836800"), Some(1_577_836_800));
        assert_eq!(parse_date("yesterday"), None);
        // Found by fuzzing: huge years and offsets overflowed.
        assert_eq!(parse_date("99999999999999999-01-01"), None);
        assert_eq!(parse_date("2020-01-01T00:00:00+99999999999999999:00"), None);
        assert_eq!(parse_date("9999-12-31T23:59:59Z"), Some(253_402_300_799));
    }
}
