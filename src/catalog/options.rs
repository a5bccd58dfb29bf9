//! The `pgtrickle.*` settings of a stream table.
//!
//! A stream table's settings live in its `pg_class.reloptions`, as entries
//! `pgtrickle.<name>=<value>`, so that `pg_dump` writes them back into the
//! `CREATE MATERIALIZED VIEW … WITH (…)` it emits and a restore rebuilds the
//! stream table. Users write `pgtrickle.stream = true` (namespace `pgtrickle`,
//! name `stream`); pg_dump writes `"pgtrickle.stream"='true'` (one quoted name,
//! no namespace). Both arrive here as the key `stream`.
//!
//! This module is pure Rust: it turns (key, value) pairs into typed settings
//! and back, and knows nothing of PostgreSQL's node trees.

use crate::error::{PgtError, PgtResult};
use crate::worker::schedule::Schedule;

/// Prefix of our entries in `pg_class.reloptions`.
pub const RELOPT_PREFIX: &str = "pgtrickle.";
pub const NAMESPACE: &str = "pgtrickle";

/// How a stream table is kept fresh, as the user asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshMode {
    Full,
    Differential,
    Immediate,
    /// Differential when the query allows it, FULL otherwise.
    Auto,
}

impl RefreshMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshMode::Full => "full",
            RefreshMode::Differential => "differential",
            RefreshMode::Immediate => "immediate",
            RefreshMode::Auto => "auto",
        }
    }

    pub fn parse(value: &str) -> PgtResult<RefreshMode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(RefreshMode::Full),
            "differential" => Ok(RefreshMode::Differential),
            "immediate" => Ok(RefreshMode::Immediate),
            "auto" => Ok(RefreshMode::Auto),
            _ => Err(PgtError::InvalidOptionValue {
                name: "refresh_mode".into(),
                value: value.into(),
                hint: "Valid values are \"full\", \"differential\", \"immediate\" and \"auto\".".into(),
            }),
        }
    }
}

/// The settings of a stream table (everything but `stream` itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    pub refresh_mode: RefreshMode,
    /// The schedule as the user wrote it (validated); `None` = manual refresh.
    pub schedule: Option<String>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings { refresh_mode: RefreshMode::Auto, schedule: None }
    }
}

/// One `pgtrickle.*` item of a `WITH (…)`, `SET (…)` or `RESET (…)` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionChange {
    /// `key = value`; a bare `key` (no value) arrives as `Some("true")`.
    Set {
        key: String,
        value: String,
    },
    Reset {
        key: String,
    },
}

impl OptionChange {
    pub fn key(&self) -> &str {
        match self {
            OptionChange::Set { key, .. } | OptionChange::Reset { key } => key,
        }
    }
}

/// The key of an option if it is one of ours: `(Some("pgtrickle"), "x")` and
/// `(None, "pgtrickle.x")` both give `Some("x")`. Keys are case-folded as
/// PostgreSQL folds unquoted identifiers.
pub fn our_key(namespace: Option<&str>, name: &str) -> Option<String> {
    match namespace {
        Some(ns) if ns.eq_ignore_ascii_case(NAMESPACE) => Some(name.to_ascii_lowercase()),
        Some(_) => None,
        None => {
            let lower = name.to_ascii_lowercase();
            lower.strip_prefix(RELOPT_PREFIX).map(str::to_string)
        }
    }
}

/// PostgreSQL's boolean spellings (as `parse_bool` accepts them).
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn validate_key(key: &str) -> PgtResult<()> {
    match key {
        "stream" | "refresh_mode" | "schedule" => Ok(()),
        _ => Err(PgtError::UnknownOption { name: key.into() }),
    }
}

fn parse_stream(value: &str) -> PgtResult<bool> {
    parse_bool(value).ok_or_else(|| PgtError::InvalidOptionValue {
        name: "stream".into(),
        value: value.into(),
        hint: "pgtrickle.stream takes a boolean value.".into(),
    })
}

fn parse_schedule(value: &str) -> PgtResult<String> {
    Schedule::parse(value).map_err(|why| PgtError::InvalidOptionValue {
        name: "schedule".into(),
        value: value.into(),
        hint: format!(
            "{why}. Use a duration such as '30s', '5m' or '1h30m', a cron expression such as \
             '*/5 * * * *' or '@hourly', or 'calculated'."
        ),
    })?;
    Ok(value.trim().to_string())
}

/// Reject repeated and unknown keys.
fn check_list(changes: &[OptionChange]) -> PgtResult<()> {
    for (i, c) in changes.iter().enumerate() {
        validate_key(c.key())?;
        if changes[..i].iter().any(|p| p.key() == c.key()) {
            return Err(PgtError::DuplicateOption { name: c.key().into() });
        }
    }
    Ok(())
}

/// The result of a `CREATE MATERIALIZED VIEW … WITH (pgtrickle.…)`: `None`
/// when `pgtrickle.stream = false` (an ordinary materialized view).
pub fn settings_for_create(changes: &[OptionChange]) -> PgtResult<Option<StreamSettings>> {
    check_list(changes)?;
    let mut stream = None;
    let mut settings = StreamSettings::default();
    for c in changes {
        let OptionChange::Set { key, value } = c else {
            return Err(PgtError::Internal("RESET in CREATE".into()));
        };
        match key.as_str() {
            "stream" => stream = Some(parse_stream(value)?),
            "refresh_mode" => settings.refresh_mode = RefreshMode::parse(value)?,
            "schedule" => settings.schedule = Some(parse_schedule(value)?),
            _ => unreachable_key(key)?,
        }
    }
    let others: Vec<&str> = changes.iter().map(OptionChange::key).filter(|k| *k != "stream").collect();
    match stream {
        Some(true) => Ok(Some(settings)),
        _ if !others.is_empty() => Err(PgtError::OptionsWithoutStream {
            options: others.iter().map(|k| format!("pgtrickle.{k}")).collect::<Vec<_>>().join(", "),
        }),
        _ => Ok(None),
    }
}

fn unreachable_key(key: &str) -> PgtResult<()> {
    Err(PgtError::UnknownOption { name: key.into() })
}

/// What an `ALTER MATERIALIZED VIEW … SET/RESET (pgtrickle.…)` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AlterOutcome {
    /// The relation is (or stays) a stream table with these settings.
    Stream(StreamSettings),
    /// `pgtrickle.stream = false` or `RESET (pgtrickle.stream)`: becomes an
    /// ordinary materialized view.
    Plain,
}

/// Apply SET/RESET items to the current settings (`None` = not a stream table).
pub fn apply_alter(current: Option<&StreamSettings>, changes: &[OptionChange]) -> PgtResult<AlterOutcome> {
    check_list(changes)?;
    let mut stream = current.is_some();
    let mut settings = current.cloned().unwrap_or_default();
    for c in changes {
        match c {
            OptionChange::Set { key, value } => match key.as_str() {
                "stream" => stream = parse_stream(value)?,
                "refresh_mode" => settings.refresh_mode = RefreshMode::parse(value)?,
                "schedule" => settings.schedule = Some(parse_schedule(value)?),
                _ => unreachable_key(key)?,
            },
            OptionChange::Reset { key } => match key.as_str() {
                "stream" => stream = false,
                "refresh_mode" => settings.refresh_mode = RefreshMode::Auto,
                "schedule" => settings.schedule = None,
                _ => unreachable_key(key)?,
            },
        }
    }
    if stream {
        return Ok(AlterOutcome::Stream(settings));
    }
    let others: Vec<String> = changes
        .iter()
        .filter(|c| c.key() != "stream" && !matches!(c, OptionChange::Reset { .. }))
        .map(|c| format!("pgtrickle.{}", c.key()))
        .collect();
    if others.is_empty() {
        Ok(AlterOutcome::Plain)
    } else {
        Err(PgtError::OptionsWithoutStream { options: others.join(", ") })
    }
}

/// The reloptions entries for a stream table, in a fixed order.
pub fn to_reloptions(settings: &StreamSettings) -> Vec<String> {
    let mut out = vec![
        format!("{RELOPT_PREFIX}stream=true"),
        format!("{RELOPT_PREFIX}refresh_mode={}", settings.refresh_mode.as_str()),
    ];
    if let Some(s) = &settings.schedule {
        out.push(format!("{RELOPT_PREFIX}schedule={s}"));
    }
    out
}

/// Is this reloptions entry one of ours?
pub fn is_our_reloption(entry: &str) -> bool {
    entry.to_ascii_lowercase().starts_with(RELOPT_PREFIX)
}

/// Replace our entries in a reloptions list, keeping everyone else's in order.
pub fn merge_reloptions(existing: &[String], ours: &[String]) -> Vec<String> {
    existing.iter().filter(|e| !is_our_reloption(e)).cloned().chain(ours.iter().cloned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: &str) -> OptionChange {
        OptionChange::Set { key: k.into(), value: v.into() }
    }

    #[test]
    fn keys_in_both_spellings() {
        assert_eq!(our_key(Some("pgtrickle"), "stream").as_deref(), Some("stream"));
        assert_eq!(our_key(Some("PGTRICKLE"), "Stream").as_deref(), Some("stream"));
        assert_eq!(our_key(None, "pgtrickle.refresh_mode").as_deref(), Some("refresh_mode"));
        assert_eq!(our_key(None, "fillfactor"), None);
        assert_eq!(our_key(Some("toast"), "autovacuum_enabled"), None);
    }

    #[test]
    fn create_defaults_and_values() {
        let s = settings_for_create(&[set("stream", "true")]).unwrap().unwrap();
        assert_eq!(s, StreamSettings::default());
        let s =
            settings_for_create(&[set("stream", "on"), set("refresh_mode", "FULL"), set("schedule", "5m")])
                .unwrap()
                .unwrap();
        assert_eq!(s.refresh_mode, RefreshMode::Full);
        assert_eq!(s.schedule.as_deref(), Some("5m"));
    }

    #[test]
    fn create_stream_false_is_plain() {
        assert_eq!(settings_for_create(&[set("stream", "false")]).unwrap(), None);
        let err = settings_for_create(&[set("stream", "false"), set("schedule", "1m")]).unwrap_err();
        assert!(matches!(err, PgtError::OptionsWithoutStream { .. }));
        let err = settings_for_create(&[set("refresh_mode", "full")]).unwrap_err();
        assert!(matches!(err, PgtError::OptionsWithoutStream { .. }));
    }

    #[test]
    fn create_rejects_bad_input() {
        assert!(matches!(
            settings_for_create(&[set("stream", "true"), set("colour", "red")]).unwrap_err(),
            PgtError::UnknownOption { .. }
        ));
        assert!(matches!(
            settings_for_create(&[set("stream", "maybe")]).unwrap_err(),
            PgtError::InvalidOptionValue { .. }
        ));
        assert!(matches!(
            settings_for_create(&[set("stream", "true"), set("refresh_mode", "sometimes")]).unwrap_err(),
            PgtError::InvalidOptionValue { .. }
        ));
        assert!(matches!(
            settings_for_create(&[set("stream", "true"), set("schedule", "soon")]).unwrap_err(),
            PgtError::InvalidOptionValue { .. }
        ));
        assert!(matches!(
            settings_for_create(&[set("stream", "true"), set("stream", "true")]).unwrap_err(),
            PgtError::DuplicateOption { .. }
        ));
    }

    #[test]
    fn alter_set_reset_and_unregister() {
        let cur = StreamSettings { refresh_mode: RefreshMode::Full, schedule: Some("1m".into()) };
        let out = apply_alter(Some(&cur), &[OptionChange::Reset { key: "schedule".into() }]).unwrap();
        assert_eq!(
            out,
            AlterOutcome::Stream(StreamSettings { refresh_mode: RefreshMode::Full, schedule: None })
        );
        let out = apply_alter(Some(&cur), &[OptionChange::Reset { key: "refresh_mode".into() }]).unwrap();
        assert_eq!(
            out,
            AlterOutcome::Stream(StreamSettings {
                refresh_mode: RefreshMode::Auto,
                schedule: Some("1m".into())
            })
        );
        assert_eq!(apply_alter(Some(&cur), &[set("stream", "off")]).unwrap(), AlterOutcome::Plain);
        assert_eq!(
            apply_alter(None, &[set("stream", "true")]).unwrap(),
            AlterOutcome::Stream(StreamSettings::default())
        );
        assert!(apply_alter(None, &[set("schedule", "1m")]).is_err());
    }

    #[test]
    fn reloptions_round_trip() {
        let s = StreamSettings { refresh_mode: RefreshMode::Full, schedule: Some("*/5 * * * *".into()) };
        let ours = to_reloptions(&s);
        assert_eq!(
            ours,
            vec!["pgtrickle.stream=true", "pgtrickle.refresh_mode=full", "pgtrickle.schedule=*/5 * * * *"]
        );
        let merged = merge_reloptions(
            &["fillfactor=70".into(), "pgtrickle.stream=true".into(), "pgtrickle.schedule=1m".into()],
            &ours,
        );
        assert_eq!(merged[0], "fillfactor=70");
        assert_eq!(&merged[1..], &ours[..]);
    }
}
