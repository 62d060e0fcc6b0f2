//! [`Point`]: one measurement at one time, its tags and typed fields — what flows between the
//! stages of a tick. Sources yield points, the cycle hands them on, sinks receive them; the
//! spool and the quarantine keep them as line protocol ([`crate::sink::line_protocol`]) and
//! read them back into points.
//!
//! Owns the shape of a point and nothing about its wire forms: it must not encode, parse or
//! name a measurement (that is the schema's).

use std::borrow::Cow;

/// A measurement, tag or field name: the schema's constants as they are, or a name read back
/// from a stored line.
pub type Name = Cow<'static, str>;

/// A field value with its type. A field keeps one type forever (in InfluxDB as in the stores).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
    String(String),
    Boolean(bool),
}

/// One point: a measurement, its tags, its fields and a millisecond timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: Name,
    pub tags: Vec<(Name, String)>,
    pub fields: Vec<(Name, FieldValue)>,
    pub timestamp_ms: i64,
}

impl Point {
    /// The value of the tag `key`, if the point has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the field `key`, if the point has it.
    pub fn field(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}
