//! Series of `(ms, value)` readings, serialized as one packed byte string by binary formats
//! (the store's msgpack) and as a list of pairs by readable ones (JSON: the API, `athena risk
//! status --json`). The risk state's series (equity, gas, slippage) and each pool profile's TVL
//! readings are rewritten at every tick; encoding their thousands of pairs one number at a time
//! was about a fifth of a backtest tick. Reading accepts both forms, so a record written
//! before (a list of pairs) still reads.
//!
//! Use it as `#[serde(with = "crate::series")]` on a `VecDeque<(u64, f64)>`.

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};
use std::collections::VecDeque;

/// Bytes of one packed reading: the time (u64) and the value (f64), little-endian.
const READING_BYTES: usize = 16;

/// Writes `series` as packed bytes, or as a list of pairs for a readable format.
pub fn serialize<S: Serializer>(series: &VecDeque<(u64, f64)>, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        return s.collect_seq(series);
    }
    s.serialize_bytes(&pack(series))
}

/// Reads a series written in either form.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VecDeque<(u64, f64)>, D::Error> {
    d.deserialize_any(SeriesVisitor)
}

fn pack(series: &VecDeque<(u64, f64)>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(series.len() * READING_BYTES);
    for (at, value) in series {
        bytes.extend_from_slice(&at.to_le_bytes());
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

struct SeriesVisitor;

impl<'de> Visitor<'de> for SeriesVisitor {
    type Value = VecDeque<(u64, f64)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of (ms, value) readings, or their packed bytes (16 per reading)")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = VecDeque::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(reading) = seq.next_element::<(u64, f64)>()? {
            out.push_back(reading);
        }
        Ok(out)
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        if !bytes.len().is_multiple_of(READING_BYTES) {
            return Err(E::invalid_length(bytes.len(), &self));
        }
        Ok(bytes
            .chunks_exact(READING_BYTES)
            .map(|r| {
                let (at, value) = r.split_at(8);
                (
                    u64::from_le_bytes(at.try_into().expect("8 bytes")),
                    f64::from_le_bytes(value.try_into().expect("8 bytes")),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};
    use std::collections::VecDeque;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Packed {
        #[serde(with = "crate::series")]
        readings: VecDeque<(u64, f64)>,
    }

    /// The same record as written before the series were packed.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Listed {
        readings: VecDeque<(u64, f64)>,
    }

    proptest! {
        #[test]
        fn a_series_reads_back_from_msgpack_and_json_and_from_the_old_list_form(
            readings in prop::collection::vec((any::<u64>(), -1e12f64..1e12), 0..300),
        ) {
            let readings: VecDeque<(u64, f64)> = readings.into();
            let packed = Packed { readings: readings.clone() };
            let bytes = rmp_serde::to_vec_named(&packed).unwrap();
            prop_assert_eq!(&rmp_serde::from_slice::<Packed>(&bytes).unwrap(), &packed);
            let json = serde_json::to_string(&packed).unwrap();
            prop_assert_eq!(
                json.clone(),
                serde_json::to_string(&Listed { readings: readings.clone() }).unwrap(),
                "readable formats keep the list of pairs"
            );
            prop_assert_eq!(&serde_json::from_str::<Packed>(&json).unwrap(), &packed);
            let old = rmp_serde::to_vec_named(&Listed { readings }).unwrap();
            prop_assert_eq!(&rmp_serde::from_slice::<Packed>(&old).unwrap(), &packed);
        }
    }

    #[test]
    fn packed_bytes_of_a_wrong_length_are_refused_in_one_line() {
        #[derive(Serialize)]
        struct Raw {
            #[serde(with = "serde_bytes_like")]
            readings: Vec<u8>,
        }
        mod serde_bytes_like {
            pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(b)
            }
        }
        let bytes = rmp_serde::to_vec_named(&Raw {
            readings: vec![0; 17],
        })
        .unwrap();
        let err = rmp_serde::from_slice::<Packed>(&bytes).unwrap_err();
        assert!(err.to_string().contains("16 per reading"), "{err}");
    }
}
