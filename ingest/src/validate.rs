//! SPEC section 1: one line in, one valid event or one rejection out.
//!
//! Every rule of the event contract is here and nowhere else. Field rules
//! are data ([`Spec`] tables per event type), so adding an optional field is
//! one line. A rejection carries a stable `code` for scripts and a message
//! that names the field and what was wrong with it, for people.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

use agentledger_lake::schema::{EVENTS_SCHEMA, MONEY_PRECISION, MONEY_SCALE};
use serde_json::value::RawValue;

use crate::decimal::{Decimal, FitError};
use crate::json::{
    Form, LINEAR_KEYS, RawObject, ShapeError, check_shape, describe, extend_compact_object,
    object_members, write_members, write_value,
};
use crate::limits::Limits;
use crate::names::NameTable;
use crate::onepass;

/// A typed value of one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val<'a> {
    /// Text (borrowed from the line where it needed no unescaping).
    Str(Cow<'a, str>),
    /// An integer.
    Int(i64),
    /// Money scaled by 10^12.
    Dec(i128),
    /// A boolean.
    Bool(bool),
    /// Microseconds since the Unix epoch, UTC.
    Ts(i64),
}

/// Why a line was not stored as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable reason code (`invalid_json`, `missing_field`, ...).
    pub code: &'static str,
    /// What a person should fix, naming the field.
    pub message: String,
    /// The line's `event_id`, when it had a usable one.
    pub event_id: Option<String>,
}

/// Every reason code a rejection can carry, for documentation and tests.
pub const REASON_CODES: &[&str] = &[
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "invalid_value",
    "invalid_timestamp",
    "invalid_tenant_id",
    "unknown_event_type",
    "attribute_conflict",
    "conflicting_duplicate",
    "line_too_long",
    "invalid_otlp",
    "too_deep",
    "too_many_keys",
    "attributes_too_large",
];

/// A valid event, ready for the events table.
#[derive(Debug, Clone)]
pub struct ValidEvent<'a> {
    /// The idempotency key.
    pub event_id: Cow<'a, str>,
    /// `ts` in UTC microseconds.
    pub ts_micros: i64,
    /// Hash of the canonical JSON of the whole line.
    pub content_hash: u64,
    /// Values of the schema's event columns (all columns before `source`).
    pub values: Vec<Option<Val<'a>>>,
}

/// Number of event columns (the schema's columns before the provenance ones).
pub static EVENT_COLUMNS: LazyLock<usize> =
    LazyLock::new(|| EVENTS_SCHEMA.index_of("source").expect("schema has source"));

/// The event column of each field name (a line's every key is looked up
/// here once; see [`NameTable`]).
static COLUMN_INDEX: LazyLock<NameTable> = LazyLock::new(|| {
    assert!(
        *EVENT_COLUMNS <= MAX_EVENT_COLUMNS,
        "raise MAX_EVENT_COLUMNS to the events schema's {} event columns",
        *EVENT_COLUMNS
    );
    NameTable::new(
        EVENTS_SCHEMA
            .fields()
            .iter()
            .take(*EVENT_COLUMNS)
            .enumerate()
            .map(|(i, f)| (f.name().as_str(), i)),
    )
});

/// The event column named `name`, which must be one.
fn column(name: &str) -> usize {
    COLUMN_INDEX
        .get(name)
        .unwrap_or_else(|| panic!("{name} is an event column"))
}

/// At most this many event columns (the size of [`Checker::member_of`]).
const MAX_EVENT_COLUMNS: usize = 64;

/// Column indexes of the fields every event has.
struct CommonColumns {
    event_id: usize,
    event_type: usize,
    ts: usize,
    tenant_id: usize,
    run_id: usize,
    attributes: usize,
}

static COMMON_COLUMNS: LazyLock<CommonColumns> = LazyLock::new(|| CommonColumns {
    event_id: column("event_id"),
    event_type: column("event_type"),
    ts: column("ts"),
    tenant_id: column("tenant_id"),
    run_id: column("run_id"),
    attributes: column("attributes"),
});

/// The column of each field of each event type, in spec order.
static SPEC_COLUMNS: LazyLock<Vec<Vec<usize>>> = LazyLock::new(|| {
    EVENT_TYPES
        .iter()
        .map(|t| {
            specs(t)
                .expect("a known type")
                .iter()
                .map(|spec| column(spec.name))
                .collect()
        })
        .collect()
});

/// The columns of the fields of `event_type` (a known type), in spec order.
fn spec_columns(event_type: &str) -> &'static [usize] {
    let i = EVENT_TYPES
        .iter()
        .position(|t| *t == event_type)
        .expect("a known type");
    &SPEC_COLUMNS[i]
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Any string.
    Text,
    /// A string of 1 to 128 code points.
    Text128,
    /// A JSON integer ≥ 0.
    Count,
    /// A decimal ≥ 0 with at most 12 fractional digits.
    Money,
    /// A boolean.
    Flag,
    /// One of a fixed set of strings.
    OneOf(&'static [&'static str]),
    /// A tool call's `access`: `read` or `write`; in an event derived from
    /// an OpenTelemetry span also `unknown` (SPEC section 7: a span that
    /// does not say).
    ToolAccess,
}

#[derive(Debug, Clone, Copy)]
struct Spec {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn req(name: &'static str, kind: Kind) -> Spec {
    Spec {
        name,
        kind,
        required: true,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Spec {
    Spec {
        name,
        kind,
        required: false,
    }
}

const ACCESS_VALUES: &[&str] = &["read", "write"];
const ACCESS: Kind = Kind::OneOf(ACCESS_VALUES);

const RUN_STARTED: &[Spec] = &[
    req("workflow", Kind::Text128),
    opt("agent_version", Kind::Text),
    opt("prompt_version", Kind::Text),
];
const MODEL_CALL: &[Spec] = &[
    req("model", Kind::Text),
    opt("provider", Kind::Text),
    req("input_tokens", Kind::Count),
    req("output_tokens", Kind::Count),
    opt("cached_input_tokens", Kind::Count),
    opt("reasoning_tokens", Kind::Count),
    opt("cost_usd", Kind::Money),
    opt("latency_ms", Kind::Count),
    opt("status", Kind::OneOf(&["ok", "error"])),
    opt("cache_hit", Kind::Flag),
];
/// What `access` of a tool call derived from a span may also be.
const DERIVED_ACCESS: &[&str] = &["read", "write", "unknown"];

const TOOL_CALL: &[Spec] = &[
    req("tool", Kind::Text),
    req("access", Kind::ToolAccess),
    req("status", Kind::OneOf(&["ok", "error", "timeout"])),
    opt("latency_ms", Kind::Count),
    opt("cost_usd", Kind::Money),
    opt("idempotency_key", Kind::Text),
];
const POLICY_BLOCK: &[Spec] = &[
    req("tool", Kind::Text),
    req("rule", Kind::Text),
    opt("access", ACCESS),
];
const APPROVAL: &[Spec] = &[
    req(
        "decision",
        Kind::OneOf(&["requested", "approved", "rejected"]),
    ),
    opt("tool", Kind::Text),
    opt("approver", Kind::Text),
];
const HUMAN_OVERRIDE: &[Spec] = &[
    req("kind", Kind::OneOf(&["override", "rollback"])),
    opt("actor", Kind::Text),
    opt("reason", Kind::Text),
];
const RUN_FINISHED: &[Spec] = &[
    req(
        "outcome",
        Kind::OneOf(&["success", "failure", "escalated", "abandoned"]),
    ),
    opt("cap_hit", Kind::OneOf(&["tokens", "cost", "tool_calls"])),
];
const FEEDBACK: &[Spec] = &[
    req(
        "kind",
        Kind::OneOf(&["bad_run_report", "thumbs_up", "thumbs_down"]),
    ),
    opt("actor", Kind::Text),
    opt("note", Kind::Text),
];

/// The event types of SPEC section 1.
pub const EVENT_TYPES: &[&str] = &[
    "run_started",
    "model_call",
    "tool_call",
    "policy_block",
    "approval",
    "human_override",
    "run_finished",
    "feedback",
];

fn specs(event_type: &str) -> Option<&'static [Spec]> {
    Some(match event_type {
        "run_started" => RUN_STARTED,
        "model_call" => MODEL_CALL,
        "tool_call" => TOOL_CALL,
        "policy_block" => POLICY_BLOCK,
        "approval" => APPROVAL,
        "human_override" => HUMAN_OVERRIDE,
        "run_finished" => RUN_FINISHED,
        "feedback" => FEEDBACK,
        _ => return None,
    })
}

/// Defaults SPEC section 1 gives to absent optional fields.
fn default_for(event_type: &str, field: &str) -> Option<Val<'static>> {
    match (event_type, field) {
        ("model_call", "cached_input_tokens" | "reasoning_tokens") => Some(Val::Int(0)),
        ("model_call", "status") => Some(Val::Str(Cow::Borrowed("ok"))),
        ("model_call", "cache_hit") => Some(Val::Bool(false)),
        ("tool_call", "cost_usd") => Some(Val::Dec(0)),
        _ => None,
    }
}

const COMMON: &[&str] = &[
    "event_id",
    "event_type",
    "ts",
    "tenant_id",
    "run_id",
    "attributes",
];

/// Members whose use [`Checker`] keeps as bits.
const USED_BITS: usize = u64::BITS as usize;

struct Checker<'a> {
    members: Vec<(Cow<'a, str>, &'a str)>,
    /// Bit `i` set: member `i` was taken (the first 64 members; no
    /// allocation per line for the usual object).
    used: u64,
    /// Whether each member past the 64th was taken (only the general path
    /// reads objects that large).
    used_more: Vec<bool>,
    /// For each event column, the index of the member of that name plus
    /// one (0: no such member). Keys are unique, so one member at most.
    member_of: [usize; MAX_EVENT_COLUMNS],
    /// Bit `i` set: member `i` is a string without escapes
    /// ([`onepass::OnePass::plain`]; 0 when unknown).
    plain: u32,
    /// The raw text [`Checker::take`] gave last, if that is such a string.
    plain_taken: Option<&'a str>,
    event_id: Option<Cow<'a, str>>,
    origin: Origin,
}

/// The members go back to the one pass's spare, for the thread's next line,
/// whether the line was valid or not.
impl Drop for Checker<'_> {
    fn drop(&mut self) {
        onepass::recycle(std::mem::take(&mut self.members));
    }
}

impl<'a> Checker<'a> {
    fn new(members: Vec<(Cow<'a, str>, &'a str)>, plain: u32, origin: Origin) -> Self {
        let mut member_of = [0; MAX_EVENT_COLUMNS];
        for (i, (key, _)) in members.iter().enumerate() {
            if let Some(column) = COLUMN_INDEX.get(key) {
                member_of[column] = i + 1;
            }
        }
        Self {
            used: 0,
            used_more: vec![false; members.len().saturating_sub(USED_BITS)],
            members,
            member_of,
            plain,
            plain_taken: None,
            event_id: None,
            origin,
        }
    }

    /// Whether member `i` was taken.
    fn was_taken(&self, i: usize) -> bool {
        match self.used_more.get(i.wrapping_sub(USED_BITS)) {
            Some(&more) => more,
            None => (self.used >> i) & 1 == 1,
        }
    }

    fn reject(&self, code: &'static str, message: String) -> Rejection {
        Rejection {
            code,
            message,
            event_id: self.event_id.as_deref().map(str::to_string),
        }
    }

    /// The non-null raw value of the field of event column `column`,
    /// marking the member as used.
    fn take(&mut self, column: usize) -> Option<&'a str> {
        let i = self.member_of[column].checked_sub(1)?;
        match self.used_more.get_mut(i.wrapping_sub(USED_BITS)) {
            Some(more) => *more = true,
            None => self.used |= 1 << i,
        }
        let raw = self.members[i].1;
        // Only the one pass (at most LINEAR_KEYS members) sets bits; a
        // general-path object may have far more members.
        let plain = i < u32::BITS as usize && (self.plain >> i) & 1 == 1;
        self.plain_taken = plain.then_some(raw);
        (raw != "null").then_some(raw)
    }

    /// [`Checker::take`] for a field every event has, named `name`.
    fn required(&mut self, column: usize, name: &str) -> Result<&'a str, Rejection> {
        self.take(column).ok_or_else(|| {
            self.reject(
                "missing_field",
                format!("required field '{name}' is missing or null"),
            )
        })
    }

    fn wrong_type(&self, name: &str, expected: &str, raw: &str) -> Rejection {
        self.reject(
            "wrong_type",
            format!(
                "field '{name}' must be {expected}, got {} ({})",
                describe(raw),
                excerpt(raw)
            ),
        )
    }

    fn string(&self, name: &str, text: &'a str) -> Result<Cow<'a, str>, Rejection> {
        if !text.starts_with('"') {
            return Err(self.wrong_type(name, "a string", text));
        }
        // The parser checked the string; without escapes it is its own
        // text. The one pass has said so of the text taken last (the same
        // slice: `ptr::eq` compares address and length).
        let plain = self.plain_taken.is_some_and(|p| std::ptr::eq(p, text));
        if plain || !text.contains('\\') {
            return Ok(Cow::Borrowed(&text[1..text.len() - 1]));
        }
        serde_json::from_str::<String>(text)
            .map(Cow::Owned)
            .map_err(|e| self.reject("invalid_json", format!("field '{name}': {e}")))
    }

    fn bounded(&self, name: &str, raw: &'a str, max: usize) -> Result<Cow<'a, str>, Rejection> {
        let s = self.string(name, raw)?;
        let n = s.chars().count();
        if n == 0 || n > max {
            return Err(self.reject(
                "out_of_range",
                format!("field '{name}' must be 1 to {max} characters long, got {n}"),
            ));
        }
        Ok(s)
    }

    fn value(&self, spec: &Spec, text: &'a str) -> Result<Val<'a>, Rejection> {
        let name = spec.name;
        match spec.kind {
            Kind::Text => self.string(name, text).map(Val::Str),
            Kind::Text128 => self.bounded(name, text, 128).map(Val::Str),
            Kind::Flag => match text {
                "true" => Ok(Val::Bool(true)),
                "false" => Ok(Val::Bool(false)),
                _ => Err(self.wrong_type(name, "true or false", text)),
            },
            Kind::ToolAccess => {
                let allowed = match self.origin {
                    Origin::Line => ACCESS_VALUES,
                    Origin::Span => DERIVED_ACCESS,
                };
                self.value(&opt(spec.name, Kind::OneOf(allowed)), text)
            }
            Kind::OneOf(allowed) => {
                let s = self.string(name, text)?;
                if allowed.contains(&&*s) {
                    Ok(Val::Str(s))
                } else {
                    Err(self.reject(
                        "invalid_value",
                        format!(
                            "field '{name}' must be one of {}, got {}",
                            allowed.join(", "),
                            excerpt(text)
                        ),
                    ))
                }
            }
            Kind::Count => {
                let is_int = {
                    let digits = text.strip_prefix('-').unwrap_or(text);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                };
                if !is_int {
                    return Err(self.wrong_type(
                        name,
                        "a JSON integer (no fraction, no exponent)",
                        text,
                    ));
                }
                match text.parse::<i64>() {
                    Ok(v) if v >= 0 => Ok(Val::Int(v)),
                    _ => Err(self.reject(
                        "out_of_range",
                        format!(
                            "field '{name}' must be an integer from 0 to {}, got {}",
                            i64::MAX,
                            excerpt(text)
                        ),
                    )),
                }
            }
            Kind::Money => {
                let decimal = if text.starts_with('"') {
                    let s = self.string(name, text)?;
                    Decimal::from_plain(&s).ok_or_else(|| {
                        self.wrong_type(
                            name,
                            "a JSON number or a decimal string like \"0.0125\"",
                            text,
                        )
                    })?
                } else if text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
                {
                    Decimal::from_json_number(text)
                        .ok_or_else(|| self.wrong_type(name, "a number", text))?
                } else {
                    return Err(self.wrong_type(name, "a JSON number or a decimal string", text));
                };
                if decimal.is_negative() {
                    return Err(self.reject(
                        "out_of_range",
                        format!("field '{name}' must be ≥ 0, got {}", excerpt(text)),
                    ));
                }
                match decimal.to_scaled(MONEY_SCALE as u32, u32::from(MONEY_PRECISION)) {
                    Ok(v) => Ok(Val::Dec(v)),
                    Err(FitError::TooManyFractionalDigits { needed }) => Err(self.reject(
                        "out_of_range",
                        format!(
                            "field '{name}' needs {needed} fractional digits; at most {MONEY_SCALE} are allowed ({})",
                            excerpt(text)
                        ),
                    )),
                    Err(FitError::TooLarge) => Err(self.reject(
                        "out_of_range",
                        format!("field '{name}' is too large for Decimal({MONEY_PRECISION},{MONEY_SCALE}) ({})", excerpt(text)),
                    )),
                }
            }
        }
    }
}

fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// Whether `s` is a valid `tenant_id`: 1–64 of `[A-Za-z0-9._-]`, not `.` or `..`.
/// Tenant ids name lake paths, so this is also what keeps writes inside it.
pub fn valid_tenant_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Parses an RFC 3339 timestamp to UTC microseconds (digits past the
/// microsecond truncated), as chrono's `parse_from_rfc3339` reads it.
///
/// The usual spelling (`2026-10-04T16:04:10.896Z`, `...-08:00`: a valid
/// date, no leap second, an offset of `Z` or `±HH:MM` within a day) is
/// read by [`usual_ts`] without chrono, which took about 400 instructions
/// a timestamp; everything else, and every rejection, is chrono's. A test
/// holds the two equal on generated spellings, valid and not.
pub fn parse_ts(s: &str) -> Option<i64> {
    usual_ts(s.as_bytes()).or_else(|| chrono_ts(s))
}

/// [`parse_ts`] by chrono alone.
fn chrono_ts(s: &str) -> Option<i64> {
    let dt = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    let micros = dt.timestamp().checked_mul(1_000_000)?;
    micros.checked_add(i64::from(dt.timestamp_subsec_micros()))
}

/// The timestamp in the usual spelling (see [`parse_ts`]); `None` for any
/// other, which is then chrono's to read or refuse: this never refuses on
/// its own.
fn usual_ts(b: &[u8]) -> Option<i64> {
    // The fixed part, `YYYY-MM-DDTHH:MM:SS`: every digit checked at once.
    let f: &[u8; 19] = b.get(..19)?.try_into().ok()?;
    let mut bad = 0u8;
    let mut d = |i: usize| {
        let v = f[i].wrapping_sub(b'0');
        bad |= u8::from(v > 9);
        i64::from(v)
    };
    let year = d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3);
    let month = d(5) * 10 + d(6);
    let day = d(8) * 10 + d(9);
    let (hour, minute, second) = (d(11) * 10 + d(12), d(14) * 10 + d(15), d(17) * 10 + d(18));
    if bad != 0
        || f[4] != b'-'
        || f[7] != b'-'
        || !matches!(f[10], b'T' | b't' | b' ')
        || f[13] != b':'
        || f[16] != b':'
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let digit = |i: usize| -> Option<i64> {
        let d = b.get(i)?.wrapping_sub(b'0');
        (d <= 9).then_some(i64::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    let mut at = 19;
    let mut micros = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let from = at;
        // Up to nine digits count (as chrono keeps nanoseconds), the
        // microseconds of them; the rest are read past.
        let mut nanos = 0;
        while let Some(d) = digit(at) {
            if at - from < 9 {
                nanos = nanos * 10 + d;
            }
            at += 1;
        }
        const SCALE: [i64; 10] = [
            0,
            100_000_000,
            10_000_000,
            1_000_000,
            100_000,
            10_000,
            1_000,
            100,
            10,
            1,
        ];
        let digits = at - from;
        if digits == 0 {
            return None;
        }
        micros = nanos * SCALE[digits.min(9)] / 1000;
    }
    let offset = match b.get(at)? {
        b'Z' | b'z' => {
            at += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let (hours, minutes) = (two(at + 1)?, two(at + 4)?);
            if b.get(at + 3) != Some(&b':') || hours > 23 || minutes > 59 {
                return None;
            }
            at += 6;
            let seconds = hours * 3600 + minutes * 60;
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    if at != b.len() {
        return None;
    }
    // In range: a year of four digits, a month and day checked above.
    let days = crate::sampler::days_from_civil(year as i32, month as u32, day as u32);
    let local = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some((local - offset) * 1_000_000 + micros)
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Validates one line (without its line terminator) under the default
/// [`Limits`].
pub fn validate(line: &[u8]) -> Result<ValidEvent<'_>, Rejection> {
    validate_with(line, &Limits::DEFAULT)
}

/// Validates one line (without its line terminator). Time and memory are
/// linear in the line's length (nesting and keys per object are checked
/// before anything recurses or hashes), and the stack taken is bounded by
/// the nesting limit.
pub fn validate_with<'a>(line: &'a [u8], limits: &Limits) -> Result<ValidEvent<'a>, Rejection> {
    validate_from(line, limits, Origin::Line)
}

/// Where a line to validate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An NDJSON line of SPEC section 1.
    Line,
    /// An event derived from an OpenTelemetry span (SPEC section 7): the
    /// same rules, but for a tool call's `access`, which may be `unknown`.
    Span,
}

/// [`validate_with`] for a line of the given origin.
pub fn validate_from<'a>(
    line: &'a [u8],
    limits: &Limits,
    origin: Origin,
) -> Result<ValidEvent<'a>, Rejection> {
    validate_paths(line, limits, origin, true)
}

/// [`validate_from`], reading the line in one pass where it can
/// (`one_pass`) or always the general way (to test that both agree).
pub(crate) fn validate_paths<'a>(
    line: &'a [u8],
    limits: &Limits,
    origin: Origin,
    one_pass: bool,
) -> Result<ValidEvent<'a>, Rejection> {
    validate_reusing(line, limits, origin, one_pass, Vec::new())
}

/// [`validate_from`] filling `spare` (emptied first) with the event's
/// values, so that a caller validating many lines of one buffer reuses one
/// vector instead of allocating one per line.
pub fn validate_into<'a>(
    line: &'a [u8],
    limits: &Limits,
    origin: Origin,
    spare: Vec<Option<Val<'a>>>,
) -> Result<ValidEvent<'a>, Rejection> {
    validate_reusing(line, limits, origin, true, spare)
}

/// [`validate_paths`] with a vector to fill.
fn validate_reusing<'a>(
    line: &'a [u8],
    limits: &Limits,
    origin: Origin,
    one_pass: bool,
    spare: Vec<Option<Val<'a>>>,
) -> Result<ValidEvent<'a>, Rejection> {
    let bare = |code, message| Rejection {
        code,
        message,
        event_id: None,
    };
    if line.len() > limits.max_line_bytes {
        return Err(bare(
            "line_too_long",
            format!(
                "line is {} bytes long, over the limit of {} bytes",
                line.len(),
                limits.max_line_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(line).map_err(|e| {
        bare(
            "invalid_json",
            format!(
                "line is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    // `compact`: the attributes' compact form, where the one pass wrote it.
    let (members, content_hash, plain, compact) = match one_pass
        .then(|| onepass::parse(text, limits.depth(), limits.max_keys))
        .flatten()
    {
        Some(read) => (read.members, read.content_hash, read.plain, read.compact),
        None => {
            let (members, content_hash) = read_generally(line, text, limits)?;
            (members, content_hash, 0, None)
        }
    };

    let common = &*COMMON_COLUMNS;
    let mut c = Checker::new(members, plain, origin);

    // event_id first, so every later rejection can name the event.
    let raw = c.required(common.event_id, "event_id")?;
    let event_id = c.bounded("event_id", raw, 128)?;
    c.event_id = Some(event_id.clone());

    let raw = c.required(common.event_type, "event_type")?;
    let event_type = c.string("event_type", raw)?;
    let Some(type_specs) = specs(&event_type) else {
        return Err(c.reject(
            "unknown_event_type",
            format!(
                "unknown event_type {}; expected one of {}",
                excerpt(raw),
                EVENT_TYPES.join(", ")
            ),
        ));
    };

    let raw = c.required(common.ts, "ts")?;
    let ts_text = c.string("ts", raw)?;
    let ts_micros = parse_ts(&ts_text).ok_or_else(|| {
        c.reject(
            "invalid_timestamp",
            format!(
                "field 'ts' must be an RFC 3339 timestamp with Z or an offset, got {}",
                excerpt(raw)
            ),
        )
    })?;

    let raw = c.required(common.tenant_id, "tenant_id")?;
    let tenant_id = c.string("tenant_id", raw)?;
    if !valid_tenant_id(&tenant_id) {
        return Err(c.reject(
            "invalid_tenant_id",
            format!(
                "field 'tenant_id' must be 1-64 characters of A-Z a-z 0-9 . _ - and not '.' or '..', got {}",
                excerpt(raw)
            ),
        ));
    }

    let raw = c.required(common.run_id, "run_id")?;
    let run_id = c.bounded("run_id", raw, 128)?;

    let attributes = match c.take(common.attributes) {
        None => None,
        Some(raw) if raw.starts_with('{') => Some(raw),
        Some(raw) => return Err(c.wrong_type("attributes", "an object", raw)),
    };

    let mut values = spare;
    values.clear();
    values.resize(*EVENT_COLUMNS, None);
    values[common.event_id] = Some(Val::Str(event_id.clone()));
    values[common.event_type] = Some(Val::Str(event_type.clone()));
    values[common.ts] = Some(Val::Ts(ts_micros));
    values[common.tenant_id] = Some(Val::Str(tenant_id));
    values[common.run_id] = Some(Val::Str(run_id));

    for (spec, &column) in type_specs.iter().zip(spec_columns(&event_type)) {
        let value = match c.take(column) {
            Some(raw) => Some(c.value(spec, raw)?),
            None if spec.required => {
                return Err(c.reject(
                    "missing_field",
                    format!(
                        "{event_type} requires field '{}', which is missing or null",
                        spec.name
                    ),
                ));
            }
            None => default_for(&event_type, spec.name),
        };
        values[column] = value;
    }

    if event_type == "model_call" {
        let int = |name: &str| match &values[column(name)] {
            Some(Val::Int(v)) => *v,
            _ => 0,
        };
        for (part, whole) in [
            ("cached_input_tokens", "input_tokens"),
            ("reasoning_tokens", "output_tokens"),
        ] {
            if int(part) > int(whole) {
                return Err(c.reject(
                    "out_of_range",
                    format!(
                        "field '{part}' ({}) must not exceed '{whole}' ({})",
                        int(part),
                        int(whole)
                    ),
                ));
            }
        }
    }

    // Unknown top-level fields are kept inside attributes.
    let unknown: Vec<(Cow<'_, str>, &str)> = c
        .members
        .iter()
        .enumerate()
        .filter(|(i, (k, _))| !c.was_taken(*i) && !COMMON.contains(&&**k))
        .map(|(_, (k, v))| (k.clone(), *v))
        .collect();
    // What is stored: the attributes object in compact form, with the
    // unknown fields added at its end.
    let stored = attributes.is_some() || !unknown.is_empty();
    let invalid =
        |e: serde_json::Error| c.reject("invalid_json", format!("field 'attributes': {e}"));
    let mut out = Vec::new();
    if let Some(raw) = attributes {
        match compact {
            Some(written) => out = written,
            None => write_value(raw, Form::Compact, &mut out).map_err(invalid)?,
        }
    }
    if !unknown.is_empty() {
        let own = match attributes {
            Some(raw) => match object_members(raw) {
                Some(members) => members,
                None => {
                    serde_json::from_str::<RawObject<'_>>(raw)
                        .map_err(invalid)?
                        .0
                }
            },
            None => Vec::new(),
        };
        // Both sides are free of repeats; only a name in both conflicts.
        // A set when both are large, so this stays linear.
        let conflict = if own.len() <= LINEAR_KEYS || unknown.len() <= LINEAR_KEYS {
            unknown
                .iter()
                .find(|(k, _)| own.iter().any(|(existing, _)| existing == k))
        } else {
            let names: HashSet<&str> = own.iter().map(|(k, _)| &**k).collect();
            unknown.iter().find(|(k, _)| names.contains(&**k))
        };
        if let Some((k, _)) = conflict {
            return Err(c.reject(
                "attribute_conflict",
                format!("top-level field '{k}' is not part of {event_type} and 'attributes' already has a key '{k}'"),
            ));
        }
        let keys = own.len() + unknown.len();
        if keys > limits.max_keys {
            return Err(c.reject(
                "too_many_keys",
                format!(
                    "'attributes' would hold {keys} keys with the unknown top-level fields, over the limit of {} keys per object",
                    limits.max_keys
                ),
            ));
        }
        extend_compact_object(&mut out, unknown).map_err(invalid)?;
    }
    if stored {
        if out.len() > limits.max_attributes_bytes {
            return Err(c.reject(
                "attributes_too_large",
                format!(
                    "'attributes' (with any unknown top-level fields) is {} bytes as stored, over the limit of {} bytes",
                    out.len(),
                    limits.max_attributes_bytes
                ),
            ));
        }
        values[common.attributes] = Some(Val::Str(Cow::Owned(
            String::from_utf8(out).expect("JSON is UTF-8"),
        )));
    }

    Ok(ValidEvent {
        event_id,
        ts_micros,
        content_hash,
        values,
    })
}

/// The members and content hash of a line the one-pass reader did not
/// take ([`onepass`]): the shape limits checked by a scan that does not
/// recurse, then serde_json, then the canonical form written level by
/// level; every rejection a line's JSON can earn comes from here.
fn read_generally<'a>(
    line: &'a [u8],
    text: &'a str,
    limits: &Limits,
) -> Result<Members<'a>, Rejection> {
    let bare = |code, message| Rejection {
        code,
        message,
        event_id: None,
    };
    check_shape(line, limits.depth(), limits.max_keys).map_err(|e| match e {
        ShapeError::TooDeep { depth } => bare(
            "too_deep",
            format!(
                "nesting depth {depth} exceeds the limit of {} levels of arrays and objects",
                limits.depth()
            ),
        ),
        ShapeError::TooManyKeys { keys } => bare(
            "too_many_keys",
            format!(
                "an object has {keys} keys, over the limit of {} keys per object",
                limits.max_keys
            ),
        ),
    })?;
    let obj: RawObject<'_> = match serde_json::from_str(text) {
        Ok(obj) => obj,
        Err(e) => {
            let is_other_json = !text.trim_start().starts_with('{')
                && serde_json::from_str::<&RawValue>(text).is_ok();
            return Err(if is_other_json {
                let raw: &RawValue = serde_json::from_str(text).expect("checked");
                bare(
                    "not_an_object",
                    format!("line is {}, not a JSON object", describe(raw.get())),
                )
            } else {
                bare("invalid_json", format!("line is not valid JSON: {e}"))
            });
        }
    };

    let mut canonical = Vec::with_capacity(text.len());
    write_members(obj.0.clone(), Form::Canonical, &mut canonical)
        .map_err(|e| bare("invalid_json", format!("line is not valid JSON: {e}")))?;
    let content_hash = xxhash_rust::xxh3::xxh3_64(&canonical);
    Ok((obj.0, content_hash))
}

/// A line's top-level members and its content hash.
type Members<'a> = (Vec<(Cow<'a, str>, &'a str)>, u64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_DEPTH;

    const BASE: &str =
        r#""event_id":"e1","ts":"2026-10-05T10:00:00Z","tenant_id":"acme","run_id":"r1""#;

    /// A test line; leaked, so validated events may borrow from it.
    fn line(rest: &str) -> &'static str {
        Box::leak(format!("{{{BASE},{rest}}}").into_boxed_str())
    }

    fn code(l: &str) -> &'static str {
        validate(l.as_bytes()).unwrap_err().code
    }

    fn col<'a>(ev: &ValidEvent<'a>, name: &str) -> Option<Val<'a>> {
        ev.values[column(name)].clone()
    }

    #[test]
    fn a_model_call_gets_its_defaults() {
        let ev = validate(
            line(r#""event_type":"model_call","model":"m","input_tokens":10,"output_tokens":5"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(col(&ev, "cached_input_tokens"), Some(Val::Int(0)));
        assert_eq!(col(&ev, "status"), Some(Val::Str("ok".into())));
        assert_eq!(col(&ev, "cache_hit"), Some(Val::Bool(false)));
        assert_eq!(
            col(&ev, "cost_usd"),
            None,
            "absent cost stays null so it can be priced"
        );
        assert_eq!(ev.ts_micros, 1_791_194_400_000_000);
    }

    #[test]
    fn a_tool_call_costs_zero_by_default_and_money_is_exact() {
        let ev = validate(
            line(r#""event_type":"tool_call","tool":"t","access":"read","status":"ok""#).as_bytes(),
        )
        .unwrap();
        assert_eq!(col(&ev, "cost_usd"), Some(Val::Dec(0)));
        let ev = validate(line(r#""event_type":"tool_call","tool":"t","access":"read","status":"ok","cost_usd":"0.1""#).as_bytes()).unwrap();
        assert_eq!(col(&ev, "cost_usd"), Some(Val::Dec(100_000_000_000)));
        let ev = validate(line(r#""event_type":"tool_call","tool":"t","access":"read","status":"ok","cost_usd":1.5e-3"#).as_bytes()).unwrap();
        assert_eq!(col(&ev, "cost_usd"), Some(Val::Dec(1_500_000_000)));
    }

    #[test]
    fn offsets_are_stored_as_utc_and_sub_microseconds_truncated() {
        let l = r#"{"event_id":"e","event_type":"feedback","kind":"thumbs_up","tenant_id":"a","run_id":"r","ts":"2026-10-05T01:30:00.1234569+02:00"}"#;
        let ev = validate(l.as_bytes()).unwrap();
        assert_eq!(
            ev.ts_micros,
            parse_ts("2026-10-04T23:30:00.123456Z").unwrap()
        );
    }

    #[test]
    fn every_kind_of_bad_line_has_its_code() {
        assert_eq!(code("{\"event_id\": NaN}"), "invalid_json");
        assert_eq!(code("{\"a\":"), "invalid_json");
        assert_eq!(code("[1,2]"), "not_an_object");
        assert_eq!(code("\"text\""), "not_an_object");
        assert_eq!(
            validate(b"{\"a\":\"\xff\"}").unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(code(r#"{"event_type":"feedback"}"#), "missing_field");
        assert_eq!(
            code(line(r#""event_type":"model_cal""#)),
            "unknown_event_type"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":"800","output_tokens":1"#
            )),
            "wrong_type"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":800.0,"output_tokens":1"#
            )),
            "wrong_type"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":1e3,"output_tokens":1"#
            )),
            "wrong_type"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":8,"output_tokens":-1"#
            )),
            "out_of_range"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":8,"output_tokens":1,"cached_input_tokens":9"#
            )),
            "out_of_range"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":8,"output_tokens":1,"reasoning_tokens":2"#
            )),
            "out_of_range"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":8,"output_tokens":1,"cost_usd":"0.0000000000001""#
            )),
            "out_of_range"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":8,"output_tokens":1,"cost_usd":-1"#
            )),
            "out_of_range"
        );
        assert_eq!(
            code(line(
                r#""event_type":"model_call","model":"m","input_tokens":8,"output_tokens":1,"cost_usd":"1e3""#
            )),
            "wrong_type"
        );
        assert_eq!(
            code(line(r#""event_type":"run_finished","outcome":"done""#)),
            "invalid_value"
        );
        assert_eq!(
            code(line(r#""event_type":"run_started","workflow":"""#)),
            "out_of_range"
        );
        assert_eq!(
            code(line(r#""event_type":"run_started","workflow":null"#)),
            "missing_field"
        );
        assert_eq!(
            code(line(
                r#""event_type":"run_started","workflow":"w","attributes":[1]"#
            )),
            "wrong_type"
        );
        assert_eq!(
            code(line(
                r#""event_type":"run_started","workflow":"w","attributes":{"x":1},"x":2"#
            )),
            "attribute_conflict"
        );
        let bad_ts = r#"{"event_id":"e","event_type":"feedback","kind":"thumbs_up","tenant_id":"a","run_id":"r","ts":"2026-13-45T99:00:00Z"}"#;
        assert_eq!(code(bad_ts), "invalid_timestamp");
        let no_zone = r#"{"event_id":"e","event_type":"feedback","kind":"thumbs_up","tenant_id":"a","run_id":"r","ts":"2026-10-05T10:00:00"}"#;
        assert_eq!(code(no_zone), "invalid_timestamp");
        for tenant in ["..", ".", "../etc", "acme corp", "", &"a".repeat(65)] {
            let l = format!(
                r#"{{"event_id":"e","event_type":"feedback","kind":"thumbs_up","ts":"2026-10-05T10:00:00Z","run_id":"r","tenant_id":{}}}"#,
                serde_json::to_string(tenant).unwrap()
            );
            assert_eq!(code(&l), "invalid_tenant_id", "{tenant}");
        }
        assert_eq!(code(r#"{"event_id":"e","event_id":"f"}"#), "invalid_json");
    }

    #[test]
    fn messages_name_the_field_and_the_event() {
        let r = validate(
            line(r#""event_type":"model_call","model":"m","input_tokens":"800","output_tokens":1"#)
                .as_bytes(),
        )
        .unwrap_err();
        assert!(r.message.contains("'input_tokens'"), "{}", r.message);
        assert!(r.message.contains("a string"), "{}", r.message);
        assert_eq!(r.event_id.as_deref(), Some("e1"));
    }

    #[test]
    fn null_optional_fields_are_absent_and_lengths_count_code_points() {
        let ev = validate(
            line(r#""event_type":"run_started","workflow":"ü","agent_version":null"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(col(&ev, "agent_version"), None);
        let long = "é".repeat(128);
        assert!(
            validate(
                line(&format!(
                    r#""event_type":"run_started","workflow":"{long}""#
                ))
                .as_bytes()
            )
            .is_ok()
        );
        let too_long = "é".repeat(129);
        assert_eq!(
            code(line(&format!(
                r#""event_type":"run_started","workflow":"{too_long}""#
            ))),
            "out_of_range"
        );
    }

    #[test]
    fn attributes_are_stored_alike_on_both_paths() {
        // Generated attributes (nested, spaced, escaped) with no unknown
        // top-level fields, with two (one an object holding an escape) and
        // with one.
        let mut generate = crate::json::tests::Gen(9);
        let (mut merged, mut plain) = (0, 0);
        for round in 0..6_000 {
            let value = generate.padded(4);
            let value = value.trim();
            if !value.starts_with('{') {
                continue;
            }
            let unknown = match round % 3 {
                0 => "",
                1 => r#","trace_id":"t-1","host" : { "name":"w\u0031", "tags":[1, "x"] }"#,
                _ => r#","zone":"c""#,
            };
            let text = format!(
                r#"{{{BASE},"event_type":"run_started","workflow":"w","attributes":{value}{unknown}}}"#
            );
            let fast = validate_paths(text.as_bytes(), &Limits::DEFAULT, Origin::Line, true);
            let general = validate_paths(text.as_bytes(), &Limits::DEFAULT, Origin::Line, false);
            assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{text}");
            // What is stored holds the attributes' members and the
            // unknown fields, with their values.
            type Map = serde_json::Map<String, serde_json::Value>;
            let Some(Val::Str(stored)) = col(&fast.expect(&text), "attributes") else {
                panic!("no attributes stored: {text}");
            };
            let stored: Map = serde_json::from_str(&stored).unwrap();
            let mut expected: Map = serde_json::from_str(value).unwrap();
            if let Some(fields) = unknown.strip_prefix(',') {
                let fields: Map = serde_json::from_str(&format!("{{{fields}}}")).unwrap();
                expected.extend(fields);
                merged += 1;
            } else {
                plain += 1;
            }
            assert_eq!(stored, expected, "{text}");
        }
        assert!(
            merged > 300 && plain > 150,
            "{merged} merged, {plain} alone"
        );
    }

    #[test]
    fn values_fill_the_vector_given_whatever_it_held() {
        let text = line(r#""event_type":"run_started","workflow":"w""#);
        let fresh = validate(text.as_bytes()).unwrap();
        // A used vector, still holding values, with room enough.
        let spare = vec![Some(Val::Int(7)); *EVENT_COLUMNS];
        let at = spare.as_ptr();
        let reused = validate_into(text.as_bytes(), &Limits::DEFAULT, Origin::Line, spare).unwrap();
        assert_eq!(reused.values, fresh.values);
        assert_eq!(reused.values.as_ptr(), at, "the same allocation");
    }

    /// A timestamp spelled the usual way or not quite: fields in and out
    /// of range, other separators, fractions of 0 to 12 digits, offsets of
    /// every shape chrono reads or refuses, and now and then a byte changed.
    fn random_ts(rng: &mut crate::sampler::Rng) -> String {
        let mut field = |lo: u64, hi: u64, width: usize| {
            let v = lo + rng.below(hi - lo + 1);
            if rng.below(40) == 0 {
                v.to_string()
            } else {
                format!("{v:0width$}")
            }
        };
        let year = field(0, 9999, 4);
        let (month, day) = (field(0, 13, 2), field(0, 32, 2));
        let (hour, minute, second) = (field(0, 25, 2), field(0, 61, 2), field(0, 61, 2));
        let (oh, om) = (field(0, 25, 2), field(0, 61, 2));
        let sep = *rng.pick(&["T", "T", "T", "t", " ", "x"]);
        let mut text = format!("{year}-{month}-{day}{sep}{hour}:{minute}:{second}");
        if rng.below(2) == 0 {
            text.push('.');
            for _ in 0..rng.below(13) {
                text.push(char::from(b'0' + rng.below(10) as u8));
            }
        }
        let offset = match rng.below(12) {
            0..=3 => "Z".to_string(),
            4 => "z".to_string(),
            5..=7 => format!("+{oh}:{om}"),
            8 | 9 => format!("-{oh}:{om}"),
            10 => format!("\u{2212}{oh}:{om}"),
            _ => rng
                .pick(&["", "+0530", "+05", "+05:3", "Zz", " Z"])
                .to_string(),
        };
        text.push_str(&offset);
        if rng.below(10) == 0 {
            let mut bytes = text.into_bytes();
            let at = rng.below(bytes.len() as u64) as usize;
            bytes[at] = *rng.pick(b"0123456789-:T.Z+ a");
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    }

    #[test]
    fn timestamps_read_as_chrono_reads_them() {
        let hand = [
            "2026-10-04T16:04:10-08:00",
            "2026-10-05T00:04:21.896000Z",
            "2024-02-29T23:59:59.999999999+23:59",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2000-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.1234567891234-23:59",
            "2026-06-30T23:59:60Z",
            "2026-06-30T23:59:60.5+01:00",
            "2026-01-01 00:00:00z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00-00:00",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00",
        ];
        for text in hand {
            assert_eq!(parse_ts(text), chrono_ts(text), "{text}");
        }
        let mut rng = crate::sampler::Rng(19);
        let (mut usual, mut valid) = (0, 0);
        for _ in 0..200_000 {
            let text = random_ts(&mut rng);
            let by_chrono = chrono_ts(&text);
            if let Some(micros) = usual_ts(text.as_bytes()) {
                usual += 1;
                assert_eq!(Some(micros), by_chrono, "{text}");
            }
            assert_eq!(parse_ts(&text), by_chrono, "{text}");
            valid += usize::from(by_chrono.is_some());
        }
        // Both paths are exercised: most valid spellings take the usual
        // one, and some valid ones (leap seconds, other offsets) do not.
        assert!(
            usual > 10_000 && valid > usual,
            "{usual} usual, {valid} valid"
        );
    }

    #[test]
    fn a_line_hands_its_members_to_the_next_valid_or_not() {
        let valid = line(r#""event_type":"run_started","workflow":"w""#);
        let invalid = line(r#""event_type":"no_such_type""#);
        for text in [&valid, &invalid] {
            assert_eq!(onepass::spare_members_capacity(), 0);
            let _ = validate(text.as_bytes());
            assert!(onepass::spare_members_capacity() > 0, "{text}");
            // The next line takes them.
            let _ = validate(valid.as_bytes());
            assert!(onepass::spare_members_capacity() > 0);
            // Empty the spare for the next round.
            let taken = onepass::parse(valid, 8, 1000).unwrap();
            assert_eq!(onepass::spare_members_capacity(), 0);
            drop(taken);
        }
    }

    #[test]
    fn members_past_the_64th_are_taken_or_kept_like_the_first() {
        // Unknown fields before and after the event's own, so that the
        // fields taken and the ones kept lie on both sides of member 64.
        let unknown = |from: usize, to: usize| {
            (from..to)
                .map(|i| format!(r#""x{i}":{i}"#))
                .collect::<Vec<_>>()
                .join(",")
        };
        for before in [0, 10, 63, 64, 70] {
            let text = format!(
                r#"{{{},"event_type":"run_started",{BASE},"workflow":"w","model":"m",{}}}"#,
                unknown(0, before),
                unknown(before, 80)
            )
            .replace("{,", "{");
            let text: &'static str = Box::leak(text.into_boxed_str());
            for one_pass in [true, false] {
                let ev = validate_paths(text.as_bytes(), &Limits::DEFAULT, Origin::Line, one_pass)
                    .unwrap_or_else(|e| panic!("{before}: {e:?}"));
                assert_eq!(col(&ev, "workflow"), Some(Val::Str("w".into())), "{before}");
                assert_eq!(col(&ev, "run_id"), Some(Val::Str("r1".into())), "{before}");
                let Some(Val::Str(attributes)) = col(&ev, "attributes") else {
                    panic!("{before}: no attributes");
                };
                let kept: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&attributes).unwrap();
                let mut expected: Vec<String> = (0..80).map(|i| format!("x{i}")).collect();
                expected.push("model".into());
                let mut names: Vec<String> = kept.keys().cloned().collect();
                names.sort();
                expected.sort();
                assert_eq!(names, expected, "{before}, one pass {one_pass}");
            }
        }
    }

    #[test]
    fn unknown_fields_are_kept_in_attributes() {
        let ev = validate(
            line(r#""event_type":"run_started","workflow":"w","attributes":{"region":"eu"},"trace_id":"t-1","model":"x""#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            col(&ev, "attributes"),
            Some(Val::Str(
                r#"{"region":"eu","trace_id":"t-1","model":"x"}"#.into()
            ))
        );
        assert_eq!(col(&ev, "model"), None, "model is not a run_started field");
        // Without unknown fields: the object's own text, made compact
        // (copied where nothing needs re-encoding, parsed where it does).
        for (attributes, stored) in [
            (
                r#" { "a" : [1, 2.50, {"b": "c d"}],	"f": {} } "#,
                r#"{"a":[1,2.50,{"b":"c d"}],"f":{}}"#,
            ),
            (
                r#"{ "a" : [1, 2.50, {"b": "c d"}], "e": "caf\u00e9", "f": {} }"#,
                r#"{"a":[1,2.50,{"b":"c d"}],"e":"café","f":{}}"#,
            ),
        ] {
            let text = line(&format!(
                r#""event_type":"run_started","workflow":"w","attributes":{attributes}"#
            ));
            let ev = validate(text.as_bytes()).unwrap();
            assert_eq!(
                col(&ev, "attributes"),
                Some(Val::Str(stored.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn the_content_hash_ignores_spelling_but_not_values() {
        let a = validate(line(r#""event_type":"tool_call","tool":"t","access":"read","status":"ok","cost_usd":0.50"#).as_bytes()).unwrap().content_hash;
        let b = validate(
            r#"{ "cost_usd" : 5e-1, "status":"ok","access":"read","tool":"t","event_type":"tool_call","run_id":"r1","tenant_id":"acme","ts":"2026-10-05T10:00:00Z","event_id":"e1" }"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(a, b.content_hash);
        let c = validate(line(r#""event_type":"tool_call","tool":"t","access":"read","status":"error","cost_usd":0.50"#).as_bytes()).unwrap().content_hash;
        assert_ne!(a, c);
    }

    /// A valid run_started line whose `attributes` is `attributes`.
    fn with_attributes(attributes: &str) -> String {
        format!(r#"{{{BASE},"event_type":"run_started","workflow":"w","attributes":{attributes}}}"#)
    }

    /// `{"x":[[…[1]…]]}` as `attributes`, so that the whole line nests
    /// `line_depth` levels (the line's object 1, `attributes` 2, then arrays).
    fn nested_attributes(line_depth: usize) -> String {
        let arrays = line_depth - 2;
        format!(r#"{{"x":{}1{}}}"#, "[".repeat(arrays), "]".repeat(arrays))
    }

    /// `n` distinct keys as object members, plus `extra`.
    fn object_with_keys(n: usize, extra: &str) -> String {
        let mut o = String::from("{");
        for i in 0..n {
            o.push_str(&format!(r#""k{i}":{i},"#));
        }
        o.push_str(extra);
        o.push('}');
        o
    }

    #[test]
    fn limit_codes_are_listed_reason_codes() {
        for code in [
            "line_too_long",
            "too_deep",
            "too_many_keys",
            "attributes_too_large",
        ] {
            assert!(REASON_CODES.contains(&code), "{code}");
        }
        let mut sorted = REASON_CODES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), REASON_CODES.len(), "no code listed twice");
    }

    /// 10,000 levels, in a thread with a 256 KiB stack: refused before
    /// anything recurses (the canonical hash and the attributes compaction
    /// both recurse once per level). The deepest allowed line validates on
    /// that stack too.
    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let outcome = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let deep = with_attributes(&nested_attributes(10_000));
                let deep_rejection = validate(deep.as_bytes()).unwrap_err();
                // At the top level, as a bare array, and in a broken line.
                let bare = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
                let unclosed = format!(r#"{{"event_id":"e","x":{}"#, "{\"a\":".repeat(10_000));
                let codes = [
                    validate(bare.as_bytes()).unwrap_err().code,
                    validate(unclosed.as_bytes()).unwrap_err().code,
                ];
                // Depth 64 exactly: the whole line nests 64 levels.
                let deepest_ok = with_attributes(&nested_attributes(MAX_DEPTH));
                let ok = validate(deepest_ok.as_bytes()).map(|e| e.content_hash);
                let one_more = with_attributes(&nested_attributes(MAX_DEPTH + 1));
                let over = validate(one_more.as_bytes()).map(|e| e.content_hash);
                (deep_rejection, codes, ok, over)
            })
            .unwrap()
            .join()
            .expect("no stack overflow on a 256 KiB stack");
        let (deep, codes, ok, over) = outcome;
        assert_eq!(deep.code, "too_deep", "{}", deep.message);
        assert_eq!(
            deep.message,
            "nesting depth 10000 exceeds the limit of 64 levels of arrays and objects"
        );
        assert_eq!(codes, ["too_deep", "too_deep"]);
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(over.unwrap_err().code, "too_deep");
    }

    #[test]
    fn brackets_in_strings_do_not_count_as_nesting() {
        let brackets = "[{".repeat(5_000);
        let l = with_attributes(&format!(
            r#"{{"s":"{brackets} \" {brackets}","k":"a:b:c"}}"#
        ));
        let ev = validate(l.as_bytes()).unwrap();
        assert!(ev.values[COMMON_COLUMNS.attributes].is_some());
    }

    #[test]
    fn an_object_with_too_many_keys_is_refused_quickly() {
        let started = std::time::Instant::now();
        let l = with_attributes(&object_with_keys(50_000, r#""last":0"#));
        let r = validate(l.as_bytes()).unwrap_err();
        assert_eq!(r.code, "too_many_keys");
        assert_eq!(
            r.message,
            "an object has 50001 keys, over the limit of 10000 keys per object"
        );
        // The same keys at the top level of the line.
        let top = object_with_keys(50_000, r#""event_id":"e""#);
        assert_eq!(code(&top), "too_many_keys");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn many_distinct_keys_are_accepted_and_a_repeat_among_them_is_caught() {
        let l = with_attributes(&object_with_keys(9_000, r#""z":1"#));
        let ev = validate(l.as_bytes()).unwrap();
        let Some(Val::Str(stored)) = &ev.values[COMMON_COLUMNS.attributes] else {
            panic!("attributes stored");
        };
        assert!(stored.starts_with(r#"{"k0":0,"k1":1,"#), "{stored:.40}");
        // A repeat far past the linear-scan prefix, in attributes and at the
        // top level.
        let r = validate(with_attributes(&object_with_keys(5_000, r#""k4321":0"#)).as_bytes())
            .unwrap_err();
        assert_eq!(r.code, "invalid_json");
        assert!(
            r.message.contains(r#"duplicate key "k4321""#),
            "{}",
            r.message
        );
        let top = object_with_keys(5_000, r#""k17":"again""#);
        assert!(
            validate(top.as_bytes())
                .unwrap_err()
                .message
                .contains("duplicate key")
        );
    }

    #[test]
    fn unknown_fields_merged_into_attributes_count_towards_its_limits() {
        // `n` unknown top-level fields and `n` attributes.
        let line = |n: usize| {
            let mut l = format!(r#"{{{BASE},"event_type":"run_started","workflow":"w","#);
            for i in 0..n {
                l.push_str(&format!(r#""u{i}":{i},"#));
            }
            let attributes = object_with_keys(n - 1, r#""a":1"#);
            l.push_str(&format!(r#""attributes":{attributes}}}"#));
            l
        };
        // Each object within the limit, the stored attributes not.
        let l = line(6_000);
        let r = validate(l.as_bytes()).unwrap_err();
        assert_eq!(r.code, "too_many_keys", "{}", r.message);
        assert!(r.message.contains("12000 keys"), "{}", r.message);
        // The same with one name on both sides is a conflict first.
        let conflict = l.replace(r#""u5999":5999"#, r#""k5998":5999"#);
        assert_eq!(code(&conflict), "attribute_conflict");
        // Looking for a conflict is not quadratic: 30,000 names on each
        // side (under limits that allow them) would take about 30 s here
        // (a debug build) checked each against each.
        let roomy = Limits {
            max_keys: 100_000,
            max_line_bytes: 16 << 20,
            max_attributes_bytes: 16 << 20,
            ..Limits::DEFAULT
        };
        let l = line(30_000);
        let started = std::time::Instant::now();
        assert!(validate_with(l.as_bytes(), &roomy).is_ok());
        let conflict = l.replace(r#""u29999":29999"#, r#""k29998":29999"#);
        let r = validate_with(conflict.as_bytes(), &roomy)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(r.code, "attribute_conflict");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn attributes_over_the_size_limit_are_refused() {
        let limit = crate::limits::MAX_ATTRIBUTES_BYTES;
        // {"s":"…"} is 8 bytes around the text.
        let fits = with_attributes(&format!(r#"{{"s":"{}"}}"#, "a".repeat(limit - 8)));
        assert!(validate(fits.as_bytes()).is_ok());
        let over = with_attributes(&format!(r#"{{"s":"{}"}}"#, "a".repeat(limit - 7)));
        let r = validate(over.as_bytes()).unwrap_err();
        assert_eq!(r.code, "attributes_too_large");
        assert_eq!(r.event_id.as_deref(), Some("e1"));
        assert!(
            r.message.contains(&format!(
                "is {} bytes as stored, over the limit of {limit} bytes",
                limit + 1
            )),
            "{}",
            r.message
        );
        // Unknown top-level fields are stored in attributes: they count.
        let spread = format!(
            r#"{{{BASE},"event_type":"run_started","workflow":"w","attributes":{{"s":"{}"}},"t":"{}"}}"#,
            "a".repeat(limit / 2),
            "b".repeat(limit / 2)
        );
        assert_eq!(code(&spread), "attributes_too_large");
    }

    #[test]
    fn limits_can_be_set_per_call() {
        let limits = Limits {
            max_depth: 4,
            max_line_bytes: 300,
            max_keys: 12,
            max_attributes_bytes: 20,
            ..Limits::DEFAULT
        };
        let code_with = |l: &str| {
            validate_with(l.as_bytes(), &limits)
                .map(|_| ())
                .unwrap_err()
                .code
        };
        assert!(validate_with(with_attributes(r#"{"a":[[1]]}"#).as_bytes(), &limits).is_ok());
        assert_eq!(code_with(&with_attributes(r#"{"a":[[[1]]]}"#)), "too_deep");
        assert_eq!(
            code_with(&with_attributes(r#"{"a":"123456789012345"}"#)),
            "attributes_too_large"
        );
        assert_eq!(
            code_with(&with_attributes(&object_with_keys(12, r#""z":1"#))),
            "too_many_keys"
        );
        let long = with_attributes(&format!(r#"{{"a":"{}"}}"#, "x".repeat(300)));
        let r = validate_with(long.as_bytes(), &limits).unwrap_err();
        assert_eq!(r.code, "line_too_long");
        assert_eq!(
            r.message,
            format!(
                "line is {} bytes long, over the limit of 300 bytes",
                long.len()
            )
        );
    }

    #[test]
    fn escaped_strings_are_decoded_on_both_paths() {
        // Escapes in every kind of string field, beside plain ones: the
        // one pass must decode the escaped values, not take their text.
        let text = r#"{"event_id":"e\u0031","event_type":"tool_call","ts":"2026-10-05T10:00:00Z","tenant_id":"t1","run_id":"r\"1","tool":"a\\b","access":"r\u0065ad","status":"ok","cost_usd":"0.\u0031"}"#;
        let fast = validate_paths(text.as_bytes(), &Limits::DEFAULT, Origin::Line, true).unwrap();
        let general =
            validate_paths(text.as_bytes(), &Limits::DEFAULT, Origin::Line, false).unwrap();
        assert_eq!(format!("{fast:?}"), format!("{general:?}"));
        assert_eq!(fast.event_id, "e1");
        assert_eq!(col(&fast, "run_id"), Some(Val::Str("r\"1".into())));
        assert_eq!(col(&fast, "tool"), Some(Val::Str("a\\b".into())));
        assert_eq!(col(&fast, "access"), Some(Val::Str("read".into())));
        assert_eq!(col(&fast, "tenant_id"), Some(Val::Str("t1".into())));
        assert_eq!(col(&fast, "cost_usd"), Some(Val::Dec(100_000_000_000)));
        assert!(onepass::parse(text, MAX_DEPTH, 10_000).is_some());
    }

    #[test]
    fn the_one_pass_reader_agrees_with_the_general_path_on_sample_lines() {
        let dir = tempfile::tempdir().unwrap();
        let opts = crate::sampler::SampleOptions {
            runs: 300,
            ..Default::default()
        };
        crate::sampler::generate(dir.path(), &opts).unwrap();
        let text = std::fs::read(dir.path().join("events.ndjson")).unwrap();
        let (mut lines, mut valid, mut one_pass) = (0, 0, 0);
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // Each line as written, and spaced out with its keys in
            // reverse order (another producer's spelling).
            let mut variants = vec![line.to_vec()];
            if let Ok(obj) = serde_json::from_slice::<RawObject<'_>>(line) {
                let members: Vec<String> = obj
                    .0
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{} : {v}", serde_json::to_string(k).unwrap()))
                    .collect();
                variants.push(format!("{{ {} }}", members.join(" ,\t")).into_bytes());
            }
            for line in variants {
                lines += 1;
                let fast = validate_paths(&line, &Limits::DEFAULT, Origin::Line, true);
                let general = validate_paths(&line, &Limits::DEFAULT, Origin::Line, false);
                assert_eq!(
                    format!("{fast:?}"),
                    format!("{general:?}"),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
                valid += usize::from(fast.is_ok());
                let text = std::str::from_utf8(&line).unwrap_or_default();
                one_pass += usize::from(onepass::parse(text, MAX_DEPTH, 10_000).is_some());
            }
        }
        // The common case takes one pass: every valid line here does.
        assert!(valid > lines / 2, "{valid} of {lines}");
        assert!(one_pass >= valid, "{one_pass} one-pass of {valid} valid");
    }
}
