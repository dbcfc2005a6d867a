//! The advisor's answers: the JSON schema each request carries (with a minimum and maximum on
//! every number), and the parser that turns the model's reply (untrusted bytes) into typed,
//! bounded [`Advice`]. A reply outside the schema is an error, never clamped into range: a
//! number the schema forbids never reaches a size.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Smallest size factor an answer may give.
pub const SIZE_FACTOR_MIN: f64 = 0.25;
/// Largest size factor (the size the rules chose; the advisor never grows a size).
pub const SIZE_FACTOR_MAX: f64 = 1.0;
/// The size factors the schema offers (a grammar-constrained model can give no other).
pub const SIZE_FACTORS: [f64; 4] = [0.25, 0.5, 0.75, 1.0];
/// Priorities run from 1 to this.
pub const PRIORITY_MAX: u8 = 10;
/// A reason is cut to this many characters.
pub const REASON_MAX_CHARS: usize = 160;

/// What the advisor says of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Go ahead (the risk gate still decides).
    Approve,
    /// Do not enter.
    Veto,
}

impl Verdict {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Veto => "veto",
        }
    }
}

/// A parsed, bounded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// Approve or veto.
    pub verdict: Verdict,
    /// Fraction of the rules' size, in [`SIZE_FACTOR_MIN`], [`SIZE_FACTOR_MAX`].
    pub size_factor: f64,
    /// 1–10; higher goes first among the tick's entries.
    pub priority: u8,
    /// Why, in a few words (control characters removed, at most [`REASON_MAX_CHARS`]).
    pub reason: String,
}

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplyError {
    /// Not JSON, or not the schema's shape.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// A number outside the schema's bounds (or not finite).
    #[error("{field} = {value} is outside [{min}, {max}]")]
    OutOfBounds {
        /// The field.
        field: &'static str,
        /// What the model gave.
        value: f64,
        /// Its minimum.
        min: f64,
        /// Its maximum.
        max: f64,
    },
    /// A batch reply without an answer for this id (or with it twice).
    #[error("batch reply: {0}")]
    BatchItems(String),
}

fn advice_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["approve", "veto"]},
            "size_factor": {"type": "number", "enum": SIZE_FACTORS, "minimum": SIZE_FACTOR_MIN, "maximum": SIZE_FACTOR_MAX},
            "priority": {"type": "integer", "minimum": 1, "maximum": PRIORITY_MAX},
            "reason": {"type": "string", "minLength": 1, "maxLength": REASON_MAX_CHARS}
        },
        "required": ["verdict", "size_factor", "priority", "reason"],
        "additionalProperties": false
    })
}

/// The schema of one answer.
pub fn single_schema() -> Value {
    advice_schema()
}

/// The schema of a batch of `n` answers: `{"answers": [{"id": 0, …}, …, {"id": n-1, …}]}`,
/// one item per position with its id fixed (`const`), so a grammar-constrained model can
/// neither skip nor repeat an id; the parser checks it all the same.
pub fn batch_schema(n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|id| {
            let mut item = advice_schema();
            item["properties"]["id"] =
                json!({"type": "integer", "const": id, "minimum": 0, "maximum": n.saturating_sub(1)});
            item["required"]
                .as_array_mut()
                .expect("required is a list")
                .insert(0, json!("id"));
            item
        })
        .collect();
    json!({
        "type": "object",
        "properties": {
            "answers": {"type": "array", "prefixItems": items, "minItems": n, "maxItems": n}
        },
        "required": ["answers"],
        "additionalProperties": false
    })
}

/// The reply's wire form: every field required, nothing else allowed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    verdict: Verdict,
    size_factor: f64,
    priority: f64,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: f64,
    verdict: Verdict,
    size_factor: f64,
    priority: f64,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    answers: Vec<RawItem>,
}

fn within(field: &'static str, value: f64, min: f64, max: f64) -> Result<f64, ReplyError> {
    if value.is_finite() && value >= min && value <= max {
        Ok(value)
    } else {
        Err(ReplyError::OutOfBounds {
            field,
            value,
            min,
            max,
        })
    }
}

fn bounded(raw: Raw) -> Result<Advice, ReplyError> {
    let size_factor = within(
        "size_factor",
        raw.size_factor,
        SIZE_FACTOR_MIN,
        SIZE_FACTOR_MAX,
    )?;
    let priority = within("priority", raw.priority, 1.0, f64::from(PRIORITY_MAX))?;
    if priority.fract() != 0.0 {
        return Err(ReplyError::Malformed(format!(
            "priority {priority} is not an integer"
        )));
    }
    let reason: String = raw
        .reason
        .chars()
        .filter(|c| !c.is_control())
        .take(REASON_MAX_CHARS)
        .collect();
    if !reason.chars().any(char::is_alphanumeric) {
        return Err(ReplyError::Malformed(format!(
            "a reason without a word: {reason:?}"
        )));
    }
    Ok(Advice {
        verdict: raw.verdict,
        size_factor,
        priority: priority as u8,
        reason: reason.trim().to_string(),
    })
}

/// Parses one answer.
pub fn parse_single(text: &str) -> Result<Advice, ReplyError> {
    let raw: Raw =
        serde_json::from_str(text.trim()).map_err(|e| ReplyError::Malformed(e.to_string()))?;
    bounded(raw)
}

/// Parses a batch of `n` answers, returned in id order: every id from 0 to n − 1 exactly once.
pub fn parse_batch(text: &str, n: usize) -> Result<Vec<Advice>, ReplyError> {
    let raw: RawBatch =
        serde_json::from_str(text.trim()).map_err(|e| ReplyError::Malformed(e.to_string()))?;
    let mut out: Vec<Option<Advice>> = vec![None; n];
    for item in raw.answers {
        let id = within("id", item.id, 0.0, n.saturating_sub(1) as f64)?;
        let slot = &mut out[id as usize];
        if slot.is_some() || id.fract() != 0.0 {
            return Err(ReplyError::BatchItems(format!(
                "id {id} answered twice or not an integer"
            )));
        }
        *slot = Some(bounded(Raw {
            verdict: item.verdict,
            size_factor: item.size_factor,
            priority: item.priority,
            reason: item.reason,
        })?);
    }
    out.into_iter()
        .enumerate()
        .map(|(id, a)| a.ok_or_else(|| ReplyError::BatchItems(format!("no answer for id {id}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_in_bounds_parses() {
        let a = parse_single(
            r#"{"verdict":"veto","size_factor":0.5,"priority":3,"reason":"thin\u0007 pool"}"#,
        )
        .unwrap();
        assert_eq!(a.verdict, Verdict::Veto);
        assert_eq!(a.size_factor, 0.5);
        assert_eq!(a.priority, 3);
        assert_eq!(a.reason, "thin pool");
    }

    #[test]
    fn numbers_outside_the_schema_are_refused_not_clamped() {
        for reply in [
            r#"{"verdict":"approve","size_factor":1.5,"priority":3,"reason":""}"#,
            r#"{"verdict":"approve","size_factor":0.1,"priority":3,"reason":""}"#,
            r#"{"verdict":"approve","size_factor":-1,"priority":3,"reason":""}"#,
            r#"{"verdict":"approve","size_factor":1,"priority":11,"reason":""}"#,
            r#"{"verdict":"approve","size_factor":1,"priority":0,"reason":""}"#,
        ] {
            assert!(
                matches!(parse_single(reply), Err(ReplyError::OutOfBounds { .. })),
                "{reply}"
            );
        }
        for reply in [
            "",
            "BUY",
            "[BATCHED]",
            r#"{"verdict":"buy","size_factor":1,"priority":3,"reason":""}"#,
            r#"{"verdict":"approve","size_factor":"1","priority":3,"reason":""}"#,
            r#"{"verdict":"approve","size_factor":1,"priority":2.5,"reason":""}"#,
            r#"{"verdict":"approve","size_factor":1,"priority":3}"#,
            r#"{"verdict":"approve","size_factor":1,"priority":3,"reason":"","size_usd":1e9}"#,
            r#"{"verdict":"veto","size_factor":1,"priority":3,"reason":"  "}"#,
            r#"{"verdict":"veto","size_factor":1,"priority":3,"reason":" , "}"#,
        ] {
            assert!(
                matches!(parse_single(reply), Err(ReplyError::Malformed(_))),
                "{reply}"
            );
        }
    }

    #[test]
    fn a_batch_needs_every_id_once() {
        let item = |id: u32| {
            format!(
                r#"{{"id":{id},"verdict":"approve","size_factor":1,"priority":5,"reason":"ok"}}"#
            )
        };
        let ok = format!(r#"{{"answers":[{},{}]}}"#, item(1), item(0));
        assert_eq!(parse_batch(&ok, 2).unwrap().len(), 2);
        let missing = format!(r#"{{"answers":[{}]}}"#, item(0));
        assert!(matches!(
            parse_batch(&missing, 2),
            Err(ReplyError::BatchItems(_))
        ));
        let twice = format!(r#"{{"answers":[{},{}]}}"#, item(0), item(0));
        assert!(matches!(
            parse_batch(&twice, 2),
            Err(ReplyError::BatchItems(_))
        ));
        let beyond = format!(r#"{{"answers":[{},{}]}}"#, item(0), item(2));
        assert!(matches!(
            parse_batch(&beyond, 2),
            Err(ReplyError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn the_schemas_bound_every_number() {
        let s = batch_schema(3);
        for (id, item) in s["properties"]["answers"]["prefixItems"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let p = &item["properties"];
            for field in ["id", "size_factor", "priority"] {
                assert!(p[field]["minimum"].is_number() && p[field]["maximum"].is_number());
            }
            assert_eq!(p["id"]["const"], id);
        }
        assert_eq!(s["properties"]["answers"]["minItems"], 3);
    }
}
