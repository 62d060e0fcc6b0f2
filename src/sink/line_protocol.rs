//! Line protocol encoding, spec-exact, and the gzip that both write bodies and spool segments use.
//!
//! Every line must parse, to the same tags and fields, in both parsers it may meet: InfluxDB
//! 1.x/2.x (Go) and InfluxDB 3 (IOx), which differ on backslashes and whitespace. So:
//! escaping — measurement: comma and space; tag keys, tag values and field keys: comma, equals
//! sign and space; string field values: double quote and backslash. A control character (tab,
//! newline, NUL…) can appear in no name — IOx splits on tabs, nothing may split a line — so it
//! is *replaced by a space* everywhere, string fields included. In names a backslash is kept
//! only before an ordinary character: before another backslash, a character it would escape or
//! the end, the parsers disagree (`\\` is one backslash in IOx, two in 1.x) or refuse the line,
//! so there it is left out. A tag whose value is empty *after* this is omitted (an empty value
//! is refused). Floats use the shortest round-trip digits (`itoa` for whole numbers and up to four
//! decimals, `zmij` for the others), written in plain decimal form exactly as Rust's `Display`
//! writes them (no exponent, no `.0`), so a value read back equals the `f64` written; NaN and
//! ±Inf have no syntax and are dropped (and counted). Tags are written sorted by key; timestamps
//! are in milliseconds.
//!
//! [`parse_line`] reads a line back (what replay does with a spooled line): the inverse of the
//! encoder, so every value comes back as the very value encoded; [`tag_value_read_back`] gives a
//! tag value as it would come back, for a sink that takes points without the text.

use std::borrow::Cow;
use std::io::Write as _;

pub use crate::point::{FieldValue, Name, Point};

/// What an encoding pass produced besides the text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Lines appended to the buffer.
    pub lines: usize,
    /// NaN or infinite fields that were left out.
    pub dropped_fields: usize,
    /// Points left with no field at all, hence not written.
    pub dropped_points: usize,
}

/// Appends one line per point to `out` (each ending in `\n`).
pub fn encode_points<'a>(points: impl IntoIterator<Item = &'a Point>, out: &mut String) -> Encoded {
    let mut encoded = Encoded::default();
    let mut names = PlainNames::new();
    let mut tag_order: Vec<usize> = Vec::new();
    for point in points {
        let line_start = out.len();
        names.write(out, &point.measurement, Kind::Measurement);
        // The schema gives its tags sorted already: they are written as they come.
        if point.tags.is_sorted_by_key(|(key, _)| key) {
            for (key, value) in &point.tags {
                write_tag(out, &mut names, key, value);
            }
        } else {
            tag_order.clear();
            tag_order.extend(0..point.tags.len());
            tag_order.sort_by_key(|&i| &point.tags[i].0);
            for &i in &tag_order {
                let (key, value) = &point.tags[i];
                write_tag(out, &mut names, key, value);
            }
        }
        let mut separator = ' ';
        for (key, value) in &point.fields {
            if let FieldValue::Float(f) = value
                && !f.is_finite()
            {
                encoded.dropped_fields += 1;
                continue;
            }
            out.push(separator);
            separator = ',';
            names.write(out, key, Kind::Key);
            out.push('=');
            write_field_value(out, value);
        }
        if separator == ' ' {
            out.truncate(line_start);
            encoded.dropped_points += 1;
            continue;
        }
        out.push(' ');
        out.push_str(itoa::Buffer::new().format(point.timestamp_ms));
        out.push('\n');
        encoded.lines += 1;
    }
    encoded
}

/// `,key=value`, or nothing if the value is empty once escaped (InfluxDB refuses an empty tag).
/// Inlined for the reason [`PlainNames::write`] is.
#[inline(always)]
fn write_tag(out: &mut String, names: &mut PlainNames, key: &Name, value: &str) {
    if value.is_empty() {
        return;
    }
    let tag_start = out.len();
    out.push(',');
    names.write(out, key, Kind::Key);
    out.push('=');
    let value_start = out.len();
    escape_into(out, value, Kind::Key);
    // Emptiness is decided on what is written: a name of only backslashes is empty.
    if out.len() == value_start {
        out.truncate(tag_start);
    }
}

const KEY_SPECIALS: &[char] = &[',', '=', ' '];

/// What a name is, for its escaping: a measurement escapes commas and spaces; a key (tag key, tag
/// value, field key) also equals signs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Measurement,
    Key,
}

/// A control character reads as a space.
fn printable(c: char) -> char {
    if c.is_control() { ' ' } else { c }
}

/// Bytes that are copied as they are: printable ASCII but a backslash and the specials.
const fn plain_bytes(escape_equals: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        let special =
            matches!(b as u8, b'\\' | b',' | b' ') || (escape_equals && b == b'=' as usize);
        table[b] = !special;
        b += 1;
    }
    table
}
const PLAIN_IN_KEY: [bool; 256] = plain_bytes(true);
const PLAIN_IN_MEASUREMENT: [bool; 256] = plain_bytes(false);

/// Does `text` need no escaping at all (most names)? One table load a byte.
fn is_plain(text: &str, kind: Kind) -> bool {
    let table = match kind {
        Kind::Measurement => &PLAIN_IN_MEASUREMENT,
        Kind::Key => &PLAIN_IN_KEY,
    };
    text.bytes().all(|b| table[b as usize])
}

/// The measurement, tag keys and field keys: mostly `&'static str`s, the schema's constants, the
/// same in every point. Those found plain (nothing to escape even as a key, the stricter kind) are
/// remembered by address and length — a `&'static str` never changes, so these identify its
/// text — so a call scans each once, not once a line: an open-addressing set, never more than
/// half full (past that, names are scanned every time).
struct PlainNames {
    slots: [(usize, usize); PlainNames::SLOTS],
    len: usize,
}

impl PlainNames {
    const SLOTS: usize = 128;

    fn new() -> Self {
        // (0, 0) is no `&str`'s address and length: an empty slot.
        Self {
            slots: [(0, 0); Self::SLOTS],
            len: 0,
        }
    }

    // Called for every name of every line: since names became `Cow`s the compiler no longer
    // inlined it (nor `write_tag`) by itself, and the calls cost the encoder 3 % (`perf record`
    // of `cargo bench --bench encode -- --ours-only`).
    #[inline(always)]
    fn write(&mut self, out: &mut String, name: &Name, kind: Kind) {
        // Only a `&'static str` keeps its address and text for good: a name read back from a
        // stored line is escaped each time.
        let Name::Borrowed(name) = name else {
            return escape_into(out, name, kind);
        };
        let id = (name.as_ptr() as usize, name.len());
        // Fibonacci hashing of the address: its top bits pick the first slot to look at.
        let hash = id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as usize);
        let mut at = hash >> (usize::BITS - Self::SLOTS.ilog2());
        while self.slots[at] != (0, 0) {
            if self.slots[at] == id {
                out.push_str(name);
                return;
            }
            at = (at + 1) % Self::SLOTS;
        }
        if is_plain(name, Kind::Key) {
            if self.len < Self::SLOTS / 2 {
                self.slots[at] = id;
                self.len += 1;
            }
            out.push_str(name);
        } else {
            escape_into(out, name, kind);
        }
    }
}

/// Is the UTF-8 sequence at `at` a control character (C0, DEL, or C1 = `C2 80`..`C2 9F`)?
fn control_at(bytes: &[u8], at: usize) -> bool {
    match bytes.get(at) {
        Some(&b) if b < 0x20 || b == 0x7f => true,
        Some(0xc2) => bytes.get(at + 1).is_some_and(|n| (0x80..=0x9f).contains(n)),
        _ => false,
    }
}

/// Writes `text` escaped as a `kind` of name.
fn escape_into(out: &mut String, text: &str, kind: Kind) {
    if is_plain(text, kind) {
        out.push_str(text);
    } else {
        escape_slowly(out, text, kind == Kind::Key);
    }
}

/// Escapes `text` byte by byte, copying runs of ordinary bytes at once (every special is ASCII;
/// a control character is ASCII or `C2 xx`, so no multi-byte character is ever split).
#[cold]
fn escape_slowly(out: &mut String, text: &str, escape_equals: bool) {
    let bytes = text.as_bytes();
    let (mut run, mut i) = (0, 0);
    while i < bytes.len() {
        let b = bytes[i];
        let special = b == b',' || b == b' ' || (b == b'=' && escape_equals);
        let control = control_at(bytes, i);
        if !special && !control && b != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&text[run..i]);
        if control {
            // A control character reads as a space, which both sets escape.
            out.push_str("\\ ");
            i += if b == 0xc2 { 2 } else { 1 };
        } else if special {
            out.push('\\');
            out.push(b as char);
            i += 1;
        } else {
            // A backslash is kept only where both parsers read it as itself: before an ordinary
            // character (what follows as written: a control character reads as a space).
            let next = bytes.get(i + 1);
            if next.is_some_and(|&n| !matches!(n, b'\\' | b',' | b'=' | b' '))
                && !control_at(bytes, i + 1)
            {
                out.push('\\');
            }
            i += 1;
        }
        run = i;
    }
    out.push_str(&text[run..]);
}

fn write_field_value(out: &mut String, value: &FieldValue) {
    match value {
        FieldValue::Float(f) => write_float(out, *f),
        FieldValue::Integer(i) => {
            out.push_str(itoa::Buffer::new().format(*i));
            out.push('i');
        }
        FieldValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        FieldValue::String(s) => {
            out.push('"');
            for c in s.chars().map(printable) {
                if matches!(c, '"' | '\\') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
}

/// Writes a finite `f64` as `format!("{f}")` does — the shortest digits that parse back to the
/// same value, in plain decimal form — several times faster. (Where two shortest forms exist, the
/// last digit may differ from `Display`'s; both read back as `f`.) Whole numbers and numbers of
/// up to four decimals (LCW's volumes, supplies, deltas) are written from integers by `itoa`;
/// others by `zmij`, which writes `[-]ddd.ddd` from 10^-5 to 10^16, kept as it is, and
/// `[-]d[.ddd]e±x` outside, rewritten to `Display`'s `0.0000001` or `10000000000000000`: an
/// exponent is valid line protocol in both parsers, but the plain form is what every release
/// wrote.
fn write_float(out: &mut String, f: f64) {
    if write_few_decimals(out, f) {
        return;
    }
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(f);
    // An exponent has 1 to 3 digits after `e+` or `e-`: its `e` is one of the last five bytes.
    match text.bytes().rev().take(5).position(|b| b == b'e') {
        // `1.0` is a whole number ≥ 2^53, or -0.
        None => out.push_str(text.strip_suffix(".0").unwrap_or(text)),
        Some(from_end) => {
            let e = text.len() - 1 - from_end;
            if write_without_exponent(out, &text[..e], &text[e + 1..]).is_none() {
                // Not zmij's form (never seen): `Display` writes it, exactly, more slowly.
                use std::fmt::Write as _;
                let _ = write!(out, "{f}");
            }
        }
    }
}

/// Writes `f` if it is a whole number below 2^53 or has at most four decimals below 10^9, and
/// says whether it did. Why the text is `Display`'s:
/// - below 2^53 every integer is an `f64`, so a whole number's own digits are its shortest form;
/// - `n` = `f`×10^4 rounded: when `n`/10^4 (a correctly rounded division of exact operands) is
///   `f`, the decimal `n`×10^-4 reads back as `f`; below 10^9 an ulp of `f` is at most 2^-23
///   (1.2×10^-7), so no other decimal of ≤ 4 decimals reads back as `f`, and one of more
///   decimals has more significant digits: it is the only shortest form.
///
/// -0 is left to `zmij` (it equals 0 but `Display` keeps its sign).
fn write_few_decimals(out: &mut String, f: f64) -> bool {
    let whole = f as i64;
    if whole as f64 == f && whole.unsigned_abs() < 1 << 53 && (whole != 0 || f.is_sign_positive()) {
        out.push_str(itoa::Buffer::new().format(whole));
        return true;
    }
    // `n`: `f`×10^4 to the nearest integer (or near it: any `n` that passes the check is right).
    let scaled = f * 1e4;
    let n = (scaled + 0.5f64.copysign(scaled)) as i64;
    if !(f.abs() < 1e9 && n != 0 && n as f64 / 1e4 == f) {
        return false;
    }
    // The digits of |n|, the point before its last four (`0.` and zeros first if it has fewer),
    // the decimals' trailing zeros left out (there are decimals: `f` is not whole).
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n.unsigned_abs());
    if n < 0 {
        out.push('-');
    }
    match digits.len().checked_sub(4) {
        Some(0) => out.push_str("0."),
        Some(units) => {
            out.push_str(&digits[..units]);
            out.push('.');
        }
        None => out.push_str(&POINT_AND_ZEROS[..6 - digits.len()]),
    }
    out.push_str(digits[digits.len().saturating_sub(4)..].trim_end_matches('0'));
    true
}

/// `0.` and as many zeros as a plain decimal `f64` needs (5e-324 is `0.`, 323 zeros, `5`).
const POINT_AND_ZEROS: &str = {
    const BYTES: [u8; 330] = {
        let mut bytes = [b'0'; 330];
        bytes[1] = b'.';
        bytes
    };
    match std::str::from_utf8(&BYTES) {
        Ok(text) => text,
        Err(_) => panic!("ASCII"),
    }
};

/// Writes `mantissa`×10^`exponent` (`[-]d[.ddd]`, `±x`) in plain decimal; `None`, writing
/// nothing, if they are not of that form with |x| ≥ 6 (where the point leaves the digits).
fn write_without_exponent(out: &mut String, mantissa: &str, exponent: &str) -> Option<()> {
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    // The first digit, then the others without the point.
    let (first, rest) = mantissa.split_at_checked(1)?;
    let others = rest.strip_prefix('.').unwrap_or(rest);
    let exponent: i32 = exponent.parse().ok()?;
    let parts = match exponent {
        // d.ddd e-x = 0.(x-1 zeros)dddd
        ..=-6 => [
            sign,
            POINT_AND_ZEROS.get(..(1 - exponent) as usize)?,
            first,
            others,
        ],
        // d.ddd e+x = dddd(x-3 zeros)
        6.. => {
            let zeros = (exponent as usize).checked_sub(others.len())?;
            [sign, first, others, POINT_AND_ZEROS.get(2..2 + zeros)?]
        }
        _ => return None,
    };
    for part in parts {
        out.push_str(part);
    }
    Some(())
}

/// A line read back: owned names, as a line may come from the spool of an older release.
/// Why a line could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line protocol: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// Reads one line (with or without its `\n`) of the form [`encode_points`] writes: a timestamp is
/// required (every point here has one), and its unit is milliseconds. Leading spaces and tabs
/// are skipped, as InfluxDB skips them: a stored line it takes is a point here too.
pub fn parse_line(line: &str) -> Result<Point, ParseError> {
    let line = line
        .trim_end_matches(['\n', '\r'])
        .trim_start_matches([' ', '\t']);
    let bad = |what: &str| ParseError(format!("{what} in `{}`", shorten(line)));
    let mut rest = line;
    let (measurement, stop) = take_escaped(&mut rest, &[',', ' '], &[',', ' ']);
    if measurement.is_empty() {
        return Err(bad("no measurement"));
    }
    let mut tags = Vec::new();
    let mut stop = stop;
    while stop == Some(',') {
        let (key, at) = take_escaped(&mut rest, &['='], KEY_SPECIALS);
        if at != Some('=') || key.is_empty() {
            return Err(bad("a tag without `=`"));
        }
        let (value, next) = take_escaped(&mut rest, &[',', ' '], KEY_SPECIALS);
        tags.push((key.into(), value));
        stop = next;
    }
    if stop != Some(' ') {
        return Err(bad("no fields"));
    }
    let mut fields = Vec::new();
    loop {
        let (key, at) = take_escaped(&mut rest, &['='], KEY_SPECIALS);
        if at != Some('=') || key.is_empty() {
            return Err(bad("a field without `=`"));
        }
        let (value, next) =
            take_field_value(&mut rest).ok_or_else(|| bad("an unreadable field value"))?;
        fields.push((key.into(), value));
        match next {
            Some(',') => continue,
            Some(' ') => break,
            _ => return Err(bad("no timestamp")),
        }
    }
    let timestamp_ms = rest
        .trim()
        .parse::<i64>()
        .map_err(|_| bad("an unreadable timestamp"))?;
    Ok(Point {
        measurement: measurement.into(),
        tags,
        fields,
        timestamp_ms,
    })
}

/// The start of a line for an error message (lines carry market data only, never a secret).
fn shorten(line: &str) -> String {
    line.chars().take(120).collect()
}

/// A tag value as [`parse_line`] reads it back from the line [`encode_points`] writes: a control
/// character as a space, a backslash the encoder leaves out gone; empty when the tag would be
/// left out. A sink that takes points without line protocol stores this, so that it holds what
/// InfluxDB and a replayed spool line hold.
pub fn tag_value_read_back(value: &str) -> Cow<'_, str> {
    if is_plain(value, Kind::Key) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    escape_slowly(&mut escaped, value, true);
    let mut rest = escaped.as_str();
    Cow::Owned(take_escaped(&mut rest, &[], KEY_SPECIALS).0)
}

/// Unescapes up to the first unescaped `stops` character, which it consumes and returns. Only a
/// backslash before one of `escaped` (what the encoder escapes there) is an escape: any other is
/// a character of the name.
fn take_escaped(rest: &mut &str, stops: &[char], escaped: &[char]) -> (String, Option<char>) {
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            match chars.clone().next() {
                Some((_, next)) if escaped.contains(&next) => {
                    out.push(next);
                    chars.next();
                }
                _ => out.push(c),
            }
        } else if stops.contains(&c) {
            *rest = &rest[i + c.len_utf8()..];
            return (out, Some(c));
        } else {
            out.push(c);
        }
    }
    *rest = "";
    (out, None)
}

/// One field value and the separator after it.
fn take_field_value(rest: &mut &str) -> Option<(FieldValue, Option<char>)> {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '"' => {
                    let after = &quoted[i + 1..];
                    let next = after.chars().next();
                    *rest = next.map_or("", |n| &after[n.len_utf8()..]);
                    return Some((FieldValue::String(out), next));
                }
                c => out.push(c),
            }
        }
        return None;
    }
    let end = rest.find([',', ' ']).unwrap_or(rest.len());
    let text = &rest[..end];
    let next = rest[end..].chars().next();
    *rest = next.map_or("", |n| &rest[end + n.len_utf8()..]);
    let value = match text {
        "t" | "T" | "true" | "True" | "TRUE" => FieldValue::Boolean(true),
        "f" | "F" | "false" | "False" | "FALSE" => FieldValue::Boolean(false),
        _ => match text.strip_suffix('i') {
            Some(int) => FieldValue::Integer(int.parse().ok()?),
            None => FieldValue::Float(text.parse().ok().filter(|f: &f64| f.is_finite())?),
        },
    };
    Some((value, next))
}

/// gzip at level 1: on the bench's 1000-line batch, 24 % larger than level 6 at a sixth of its CPU
/// (`cargo bench --bench encode` prints both).
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::new(1),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_back_as_it_was_encoded() {
        let point = Point {
            measurement: "m, x".into(),
            tags: vec![
                ("code".into(), "A,B=C D".into()),
                ("name".into(), "back\\slash\"q a\\,b".into()),
            ],
            fields: vec![
                ("rate".into(), FieldValue::Float(0.1 + 0.2)),
                ("tiny".into(), FieldValue::Float(5e-324)),
                ("rank".into(), FieldValue::Integer(-42)),
                (
                    "s".into(),
                    FieldValue::String("say \"hi\", \\o/ a=b".into()),
                ),
                ("ok".into(), FieldValue::Boolean(true)),
            ],
            timestamp_ms: 1_700_000_000_123,
        };
        let mut line = String::new();
        encode_points([&point], &mut line);
        let parsed = parse_line(&line).unwrap();
        assert_eq!(parsed.measurement, "m, x");
        assert_eq!(
            parsed.tags,
            vec![
                ("code".into(), "A,B=C D".to_owned()),
                // A backslash before a character the encoder escapes is left out (the parsers
                // disagree on it); one before an ordinary character stays.
                ("name".into(), "back\\slash\"q a,b".to_owned())
            ]
        );
        assert_eq!(parsed.fields, point.fields);
        assert_eq!(parsed.timestamp_ms, 1_700_000_000_123);
        for bad in ["", "m", "m f=1", "m,t f=1 1", "m f=x 1", "m f=\"open 1"] {
            assert!(parse_line(bad).is_err(), "{bad:?}");
        }
    }

    fn line(point: Point) -> (String, Encoded) {
        let mut out = String::new();
        let encoded = encode_points([&point], &mut out);
        (out, encoded)
    }

    #[test]
    fn escapes_every_position_as_the_spec_says() {
        let (text, _) = line(Point {
            measurement: "my measure,x".into(),
            tags: vec![
                ("z key".into(), "a,b=c d".into()),
                ("a=k".into(), "v".into()),
            ],
            fields: vec![("f,k".into(), FieldValue::String(r#"say "hi" \ bye"#.into()))],
            timestamp_ms: 1,
        });
        assert_eq!(
            text,
            "my\\ measure\\,x,a\\=k=v,z\\ key=a\\,b\\=c\\ d f\\,k=\"say \\\"hi\\\" \\\\ bye\" 1\n"
        );
    }

    #[test]
    fn tags_sorted_empty_tags_omitted_newlines_replaced() {
        let (text, _) = line(Point {
            measurement: "m".into(),
            tags: vec![
                ("name".into(), "Two\nLines".into()),
                ("code".into(), "X".into()),
                ("empty".into(), String::new()),
            ],
            fields: vec![
                ("n".into(), FieldValue::Integer(-3)),
                ("ok".into(), FieldValue::Boolean(true)),
            ],
            timestamp_ms: 1_700_000_000_123,
        });
        assert_eq!(
            text,
            "m,code=X,name=Two\\ Lines n=-3i,ok=true 1700000000123\n"
        );
    }

    #[test]
    fn trailing_backslashes_are_trimmed_inner_ones_kept() {
        let (text, _) = line(Point {
            measurement: "m\\".into(),
            tags: vec![("k\\".into(), "a\\b\\\\".into())],
            fields: vec![("f\\".into(), FieldValue::String("s\\".into()))],
            timestamp_ms: 1,
        });
        assert_eq!(text, "m,k=a\\b f=\"s\\\\\" 1\n");
    }

    #[test]
    fn floats_round_trip_exactly_and_non_finite_are_dropped() {
        let values = [
            0.1,
            1.0 / 3.0,
            59075.58195922644,
            1e-9,
            1.7976931348623157e308,
            23100393182.0,
            -0.0,
        ];
        for v in values {
            let (text, _) = line(Point {
                measurement: "m".into(),
                tags: vec![],
                fields: vec![("v".into(), FieldValue::Float(v))],
                timestamp_ms: 0,
            });
            let written = text
                .trim_end()
                .strip_prefix("m v=")
                .unwrap()
                .strip_suffix(" 0")
                .unwrap();
            assert_eq!(
                written.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{written}"
            );
            assert!(!written.ends_with('i'));
        }
        let (text, encoded) = line(Point {
            measurement: "m".into(),
            tags: vec![],
            fields: vec![
                ("a".into(), FieldValue::Float(f64::NAN)),
                ("b".into(), FieldValue::Float(2.5)),
                ("c".into(), FieldValue::Float(f64::INFINITY)),
            ],
            timestamp_ms: 5,
        });
        assert_eq!(text, "m b=2.5 5\n");
        assert_eq!(encoded.dropped_fields, 2);
    }

    /// Golden lines: every character line protocol treats specially, in every position.
    #[test]
    fn golden_escaping() {
        let cases: [(&str, &str, &str, &str, &str); 7] = [
            // (tag value, field key, string field, expected tag part, expected field part)
            ("a b", "f", "x", "t=a\\ b", "f=\"x\""),
            ("a,b", "f,g", "x", "t=a\\,b", "f\\,g=\"x\""),
            ("a=b", "f=g", "x", "t=a\\=b", "f\\=g=\"x\""),
            (
                "say \"hi\"",
                "f",
                "say \"hi\"",
                "t=say\\ \"hi\"",
                "f=\"say \\\"hi\\\"\"",
            ),
            (
                "back\\slash",
                "f",
                "back\\slash",
                "t=back\\slash",
                "f=\"back\\\\slash\"",
            ),
            ("Ξther 💎", "ünï", "日本", "t=Ξther\\ 💎", "ünï=\"日本\""),
            (
                "two\nlines",
                "f",
                "two\r\nlines",
                "t=two\\ lines",
                "f=\"two  lines\"",
            ),
        ];
        for (tag, key, text, tag_part, field_part) in cases {
            let (line_text, _) = line(Point {
                measurement: "m".into(),
                tags: vec![("t".into(), tag.into())],
                fields: vec![(
                    Name::Borrowed(Box::leak(key.to_owned().into_boxed_str())),
                    FieldValue::String(text.into()),
                )],
                timestamp_ms: 1,
            });
            assert_eq!(
                line_text,
                format!("m,{tag_part} {field_part} 1\n"),
                "tag {tag:?}, key {key:?}, text {text:?}"
            );
            assert_eq!(
                line_text.matches('\n').count(),
                1,
                "one line, whatever the input"
            );
        }
    }

    /// Property: any finite f64 is written so that it parses back to the same bits.
    #[test]
    fn random_floats_round_trip_bit_for_bit() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut out = String::new();
        let mut checked = 0;
        while checked < 200_000 {
            // xorshift64*: every bit pattern, so subnormals, huge and tiny exponents all appear.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = f64::from_bits(state.wrapping_mul(0x2545_f491_4f6c_dd1d));
            if !v.is_finite() {
                continue;
            }
            out.clear();
            write_field_value(&mut out, &FieldValue::Float(v));
            assert_eq!(
                out.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{v:e} written as {out}"
            );
            checked += 1;
        }
    }

    #[test]
    fn a_point_without_fields_is_dropped_and_counted() {
        let mut out = String::from("keep\n");
        let points = [
            Point {
                measurement: "m".into(),
                tags: vec![("t".into(), "x".into())],
                fields: vec![("a".into(), FieldValue::Float(f64::NAN))],
                timestamp_ms: 1,
            },
            Point {
                measurement: "m".into(),
                tags: vec![],
                fields: vec![("a".into(), FieldValue::Float(1.0))],
                timestamp_ms: 2,
            },
        ];
        let encoded = encode_points(&points, &mut out);
        assert_eq!(out, "keep\nm a=1 2\n");
        assert_eq!(
            encoded,
            Encoded {
                lines: 1,
                dropped_fields: 1,
                dropped_points: 1
            }
        );
    }

    #[test]
    fn floats_are_written_as_display_writes_them() {
        let mut specials = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e-7,
            1.5e-7,
            1e15,
            1e16,
            1.2345e16,
            1e21,
            1e22,
            1e300,
            -1e-300,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            123456789.0,
            0.000123,
        ];
        // Every exponent, with random digits (a fixed xorshift, so it replays).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let f = f64::from_bits(state);
            if f.is_finite() {
                specials.push(f);
            }
            specials.push((state % 1_000_000) as f64 / 100.0);
        }
        let mut differ = 0;
        for f in specials {
            let mut out = String::new();
            write_float(&mut out, f);
            let display = format!("{f}");
            // Where two shortest forms exist, zmij and `Display` may pick different last digits
            // (both parse back to `f`); otherwise the text is the same.
            assert_eq!(
                out.parse::<f64>().map(f64::to_bits),
                Ok(f.to_bits()),
                "{out}"
            );
            assert_eq!(out.len(), display.len(), "{out} vs {display}");
            assert!(!out.contains(['e', 'E']), "{out}");
            differ += usize::from(out != display);
        }
        assert!(
            differ < 100,
            "{differ} floats written differently from Display"
        );
    }

    /// The `itoa` paths (whole numbers, up to four decimals) write exactly `Display`'s text, at
    /// every magnitude and on both sides of their limits (2^53, 10^9).
    #[test]
    fn whole_numbers_and_few_decimals_are_written_exactly_as_display_writes_them() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut values = vec![
            0.5,
            -0.5,
            0.0001,
            -0.0001,
            0.00015,
            1.0808,
            999_999_999.999_9,
            1_000_000_000.000_1,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            9_007_199_254_740_994.0,
            -9_007_199_254_740_994.0,
        ];
        for _ in 0..300_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Up to 17 digits, 0 to 5 of them decimals, either sign.
            let digits = 1 + (state >> 59) as u32 % 17;
            let n = (state % 10u64.pow(digits)) as f64;
            let f = n / 10f64.powi((state >> 56) as i32 % 6);
            values.push(if state & 1 == 0 { f } else { -f });
        }
        for f in values {
            let mut out = String::new();
            write_float(&mut out, f);
            let display = format!("{f}");
            if f.abs() < 1e9 || (f.fract() == 0.0 && f.abs() < 2f64.powi(53)) {
                assert_eq!(out, display, "{f:e}");
            } else {
                // zmij's: where two shortest forms tie (801118760543170.25 has `.2` and `.3`),
                // it may pick the other one.
                assert_eq!(out.parse::<f64>(), Ok(f), "{out}");
                assert_eq!(out.len(), display.len(), "{out} vs {display}");
            }
        }
    }

    /// The set of plain static names: a name is escaped for its kind in every line (`m=x` is
    /// plain as a measurement, not as a key), and past the set's capacity names are still right.
    #[test]
    fn static_names_are_escaped_for_their_kind_in_every_line() {
        let points: Vec<Point> = (0..3)
            .map(|i| Point {
                measurement: "m=x".into(),
                tags: vec![("m=x".into(), "v".into())],
                fields: vec![
                    ("m=x".into(), FieldValue::Integer(i)),
                    ("plain".into(), FieldValue::Integer(i)),
                ],
                timestamp_ms: i,
            })
            .collect();
        let mut out = String::new();
        encode_points(&points, &mut out);
        assert_eq!(
            out,
            "m=x,m\\=x=v m\\=x=0i,plain=0i 0\n\
             m=x,m\\=x=v m\\=x=1i,plain=1i 1\n\
             m=x,m\\=x=v m\\=x=2i,plain=2i 2\n"
        );
        let keys: Vec<&'static str> = (0..200)
            .map(|i| &*Box::leak(format!("k{i}").into_boxed_str()))
            .collect();
        let point = Point {
            measurement: "m".into(),
            tags: vec![],
            fields: keys
                .iter()
                .map(|k| (Name::Borrowed(k), FieldValue::Boolean(true)))
                .collect(),
            timestamp_ms: 1,
        };
        let mut out = String::new();
        encode_points([&point, &point], &mut out);
        let line: String = keys.iter().map(|k| format!("{k}=true,")).collect();
        let line = format!("m {} 1\n", line.trim_end_matches(','));
        assert_eq!(out, line.repeat(2));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let data = "cryptocurrency_data,code=BTC rate=1 1\n".repeat(100);
        let packed = gzip(data.as_bytes()).unwrap();
        assert!(packed.len() < data.len() / 10);
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, data);
    }
}
