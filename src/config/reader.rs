//! Reading one variable through its row of the table: the row's default when the lookup has no
//! value, the row's kind and limits to validate it, the row's name and secrecy in a problem.
//!
//! It owns the rules of each kind of value and how a problem shows its value (a secret masked, a
//! URL's userinfo hidden). It must not know any variable by name: whatever is about one
//! variable is in its row, and rules between variables are `Settings::from_lookup`'s.

use std::fmt;
use std::str::FromStr;

use super::http_url::{HttpUrl, without_userinfo};
use super::variables::{Kind, Variable};
use super::{HedgeAfter, Secret};

/// One variable that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    /// The value as given, or a mask for secrets.
    pub shown_value: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "variable `{}` = {:?}: {}",
            self.variable, self.shown_value, self.reason
        )
    }
}

/// A whole number type a [`Kind::Number`] row is read into.
pub(super) trait Whole: FromStr + Copy + Into<u64> {
    /// A row's limit.
    fn from_limit(n: u32) -> Self;
}

impl Whole for u32 {
    fn from_limit(n: u32) -> Self {
        n
    }
}

impl Whole for u64 {
    fn from_limit(n: u32) -> Self {
        u64::from(n)
    }
}

/// Reads one variable at a time, collecting problems instead of stopping at the first.
pub(super) struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            problems: Vec::new(),
        }
    }

    /// The value, or the row's default, trimmed.
    fn value(&self, row: &Variable) -> String {
        (self.lookup)(row.name)
            .or_else(|| row.default.map(str::to_owned))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Records that `row` cannot take `value`.
    pub(super) fn problem(&mut self, row: &Variable, value: &str, reason: impl Into<String>) {
        // A URL's `user:password@` is a secret too, wherever it appears in a value.
        let shown_value = if row.secret && !value.is_empty() {
            "***".to_owned()
        } else {
            without_userinfo(value)
        };
        self.problems.push(Problem {
            variable: row.name,
            shown_value,
            reason: reason.into(),
        });
    }

    /// Whether the value (or the default) is not empty.
    pub(super) fn is_set(&self, row: &Variable) -> bool {
        !self.value(row).is_empty()
    }

    pub(super) fn text(&mut self, row: &Variable) -> String {
        expect_kind(row, matches!(row.kind, Kind::Text));
        self.value(row)
    }

    /// A [`Kind::Text`] row that is secret; one without a default must be set.
    pub(super) fn secret(&mut self, row: &Variable) -> Secret {
        let value = self.text(row);
        if row.default.is_none() && value.is_empty() {
            self.problem(row, "", "is required and was not set");
        }
        Secret::new(value)
    }

    pub(super) fn number<T: Whole>(&mut self, row: &Variable) -> T {
        let (min, max) = match row.kind {
            Kind::Number { min, max } => (min, max),
            _ => (0, u32::MAX),
        };
        expect_kind(row, matches!(row.kind, Kind::Number { .. }));
        let value = self.value(row);
        match value.parse::<T>() {
            Ok(n) if (u64::from(min)..=u64::from(max)).contains(&n.into()) => n,
            Ok(_) => {
                self.problem(row, &value, format!("must be between {min} and {max}"));
                T::from_limit(min)
            }
            Err(_) => {
                self.problem(row, &value, "must be a whole number");
                T::from_limit(min)
            }
        }
    }

    pub(super) fn flag(&mut self, row: &Variable) -> bool {
        expect_kind(row, matches!(row.kind, Kind::Flag));
        let value = self.value(row);
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.problem(row, &value, "must be true or false");
                false
            }
        }
    }

    /// The row's choice the value names (in any case); `None` when it names none.
    pub(super) fn choice(&mut self, row: &Variable) -> Option<&'static str> {
        let choices = match row.kind {
            Kind::Choice(choices) => choices,
            _ => &[],
        };
        expect_kind(row, matches!(row.kind, Kind::Choice(_)));
        let value = self.value(row);
        let found = choices.iter().find(|c| c.eq_ignore_ascii_case(&value));
        if found.is_none() {
            self.problem(row, &value, must_be_one_of(choices));
        }
        found.copied()
    }

    /// A [`Kind::Url`]; for [`Kind::UrlOrEmpty`] an empty value is a placeholder, never called.
    pub(super) fn url(&mut self, row: &Variable) -> HttpUrl {
        let value = self.value(row);
        expect_kind(row, matches!(row.kind, Kind::Url | Kind::UrlOrEmpty));
        if row.kind == Kind::UrlOrEmpty && value.is_empty() {
            return placeholder_url();
        }
        match HttpUrl::parse(&value) {
            Ok(url) => url,
            // Said, and read on: every problem of the settings is reported at once.
            Err(error) => {
                self.problem(row, &value, error.to_string());
                placeholder_url()
            }
        }
    }

    pub(super) fn code(&mut self, row: &Variable) -> String {
        expect_kind(row, matches!(row.kind, Kind::Code));
        let value = self.value(row);
        match normalize_code(&value) {
            Ok(code) => code,
            Err(reason) => {
                self.problem(row, &value, reason);
                value
            }
        }
    }

    pub(super) fn codes(&mut self, row: &Variable) -> Vec<String> {
        let (max, why) = match row.kind {
            Kind::CodeList { max, why } => (usize::from(max), why),
            _ => (usize::MAX, ""),
        };
        expect_kind(row, matches!(row.kind, Kind::CodeList { .. }));
        let value = self.value(row);
        let mut codes: Vec<String> = Vec::new();
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match normalize_code(item) {
                Ok(code) if !codes.contains(&code) => codes.push(code),
                Ok(_) => {}
                Err(reason) => self.problem(row, &value, format!("`{item}` {reason}")),
            }
        }
        if codes.len() > max {
            self.problem(row, &value, format!("lists more than {max} codes ({why})"));
        }
        codes
    }

    /// `auto`, `off` or `0` (never), or a whole number of milliseconds.
    pub(super) fn delay(&mut self, row: &Variable) -> HedgeAfter {
        let (min, max) = match row.kind {
            Kind::Delay { min, max } => (u64::from(min), u64::from(max)),
            _ => (0, u64::MAX),
        };
        expect_kind(row, matches!(row.kind, Kind::Delay { .. }));
        let value = self.value(row);
        match value.to_ascii_lowercase().as_str() {
            "auto" => HedgeAfter::Auto,
            "off" | "0" => HedgeAfter::Off,
            number => match number.parse::<u64>() {
                Ok(ms) if (min..=max).contains(&ms) => HedgeAfter::Fixed(ms),
                _ => {
                    let reason = format!(
                        "must be auto, 0 (off) or a number of milliseconds between {min} and {max}"
                    );
                    self.problem(row, &value, reason);
                    HedgeAfter::Auto
                }
            },
        }
    }
}

/// `must be a, b or c`.
fn must_be_one_of(choices: &[&str]) -> String {
    let mut reason = String::from("must be ");
    for (i, choice) in choices.iter().enumerate() {
        if i > 0 {
            reason += if i + 1 == choices.len() { " or " } else { ", " };
        }
        reason += choice;
    }
    reason
}

/// A row read as a kind it is not is a mistake in `Settings::from_lookup`, which every reading
/// of the settings meets: the tests' (debug) builds stop there, a release reads on.
fn expect_kind(row: &Variable, matches: bool) {
    debug_assert!(
        matches,
        "`{}` is read as another kind than its row's",
        row.name
    );
}

fn placeholder_url() -> HttpUrl {
    HttpUrl::parse("http://invalid.invalid/").expect("static URL parses")
}

/// Upper-cases a coin or currency code and checks its shape: 1–32 characters of letters, digits,
/// `_`, `-`, `.` (LCW codes include forms like `_BTC` and `USDC.E`).
pub fn normalize_code(value: &str) -> Result<String, &'static str> {
    let code = value.trim();
    if code.is_empty() || code.len() > 32 {
        return Err("must be a code of 1 to 32 characters");
    }
    if !code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err("may contain only letters, digits, `_`, `-` and `.`");
    }
    Ok(code.to_ascii_uppercase())
}
