//! Input limits: what one line may cost, whatever its depth, size or shape.
//!
//! A producer bug (or a hostile file) can write a line nested ten thousand
//! levels deep, with fifty thousand keys, or hundreds of megabytes long. Such
//! a line must not crash the ingest, stall it or take its memory: it is
//! quarantined with a reason code of its own, like any other bad line, and
//! the rest of the file is ingested. Each limit is checked before the work it
//! bounds: line length while reading (an over-long line is never buffered
//! whole), nesting depth and keys per object by one non-recursive byte scan
//! before anything parses the line, attribute size on the text to be stored.
//!
//! The defaults are far above what agents write (a typical event is a few
//! hundred bytes, three levels deep). `IngestOptions::default()` reads
//! overrides from the environment ([`Limits::from_env`]).

/// The limits one line is held to. Each one exceeded is its own quarantine
/// reason code; the message names the limit and the measured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of arrays and objects anywhere in a line, the line's
    /// own object being level 1 (`too_deep`). At most [`MAX_DEPTH_CEILING`].
    pub max_depth: usize,
    /// Longest line in bytes, without its line end (`line_too_long`).
    pub max_line_bytes: usize,
    /// Most members of any one object in a line, and of the stored
    /// `attributes` with the unknown top-level fields merged in
    /// (`too_many_keys`).
    pub max_keys: usize,
    /// Longest stored `attributes` JSON text in bytes
    /// (`attributes_too_large`).
    pub max_attributes_bytes: usize,
    /// Longest line of an OTLP/JSON file in bytes (`line_too_long`): one
    /// line holds a whole export batch of spans, so it may be far longer
    /// than an event. The events derived from it are each held to the
    /// limits above.
    pub max_otlp_line_bytes: usize,
}

/// Default nesting depth limit.
pub const MAX_DEPTH: usize = 64;
/// Default line length limit: 1 MiB.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Default limit of members per object.
pub const MAX_KEYS: usize = 10_000;
/// Default limit of the stored `attributes` text: 256 KiB.
pub const MAX_ATTRIBUTES_BYTES: usize = 256 << 10;
/// Default length limit of an OTLP/JSON line: 64 MiB.
pub const MAX_OTLP_LINE_BYTES: usize = 64 << 20;

/// The highest nesting limit that may be configured. Canonicalising a value
/// recurses once per level, so this bounds the stack it takes (a few hundred
/// bytes a level) whatever the configuration.
pub const MAX_DEPTH_CEILING: usize = 128;

/// Bytes of an over-long line kept as its raw text in the quarantine (the
/// rest of the line is read past, never held).
pub const RAW_EXCERPT_BYTES: usize = 4096;

impl Limits {
    /// The defaults.
    pub const DEFAULT: Limits = Limits {
        max_depth: MAX_DEPTH,
        max_line_bytes: MAX_LINE_BYTES,
        max_keys: MAX_KEYS,
        max_attributes_bytes: MAX_ATTRIBUTES_BYTES,
        max_otlp_line_bytes: MAX_OTLP_LINE_BYTES,
    };

    /// The defaults, each overridden by its environment variable when set:
    /// `AGENTLEDGER_MAX_DEPTH` (at most [`MAX_DEPTH_CEILING`]),
    /// `AGENTLEDGER_MAX_LINE_BYTES`, `AGENTLEDGER_MAX_KEYS`,
    /// `AGENTLEDGER_MAX_ATTRIBUTES_BYTES` and
    /// `AGENTLEDGER_MAX_OTLP_LINE_BYTES`. A value that is not a whole number
    /// of at least 1 is ignored with a warning.
    pub fn from_env() -> Self {
        use agentledger_lake::retry::env_count;
        let get = |name: &str, unit: &str, default: usize| {
            usize::try_from(env_count(name, unit, 1, default as u64)).unwrap_or(usize::MAX)
        };
        let mut max_depth = get("AGENTLEDGER_MAX_DEPTH", "levels", MAX_DEPTH);
        if max_depth > MAX_DEPTH_CEILING {
            tracing::warn!(
                "AGENTLEDGER_MAX_DEPTH={max_depth} is over the ceiling of {MAX_DEPTH_CEILING}; using {MAX_DEPTH_CEILING}"
            );
            max_depth = MAX_DEPTH_CEILING;
        }
        Limits {
            max_depth,
            max_line_bytes: get("AGENTLEDGER_MAX_LINE_BYTES", "bytes", MAX_LINE_BYTES),
            max_keys: get("AGENTLEDGER_MAX_KEYS", "keys", MAX_KEYS),
            max_attributes_bytes: get(
                "AGENTLEDGER_MAX_ATTRIBUTES_BYTES",
                "bytes",
                MAX_ATTRIBUTES_BYTES,
            ),
            max_otlp_line_bytes: get(
                "AGENTLEDGER_MAX_OTLP_LINE_BYTES",
                "bytes",
                MAX_OTLP_LINE_BYTES,
            ),
        }
    }

    /// The nesting limit actually enforced: never over the ceiling.
    pub fn depth(&self) -> usize {
        self.max_depth.min(MAX_DEPTH_CEILING)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
