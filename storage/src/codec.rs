//! Record codec: msgpack (rmp-serde, named fields so records can gain fields) behind a 12-byte
//! header, optionally zstd-compressed, optionally with a trained dictionary.
//!
//! Header: `magic(0xA7) | format version | compression | record kind | dictionary id (u32 LE) |
//! crc32 (u32 LE)`, the CRC covering the first eight header bytes and the payload. Corruption is
//! therefore found at read time; old records stay readable because the version and the
//! dictionary id travel with each record, and dictionaries are never deleted (see
//! [`crate::dictionary`]).

use crate::error::{Result, StoreError};
use serde::{Serialize, de::DeserializeOwned};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{CCtx, DCtx};

const MAGIC: u8 = 0xA7;
/// Current record format version.
pub const FORMAT_VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 12;
/// Largest decoded record accepted (guards allocations on a damaged length).
const MAX_DECODED: u64 = 256 * 1024 * 1024;

/// What a record is; dictionaries are trained per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum RecordKind {
    /// A hot memory (full record).
    Memory = 1,
    /// A warm memory (compacted).
    MemoryWarm = 2,
    /// A cold-tier index entry.
    ColdEntry = 3,
    /// A position.
    Position = 4,
    /// A ledger entry.
    Ledger = 5,
    /// A pending intent.
    Intent = 6,
    /// Risk and breaker state.
    Risk = 7,
    /// A journal entry.
    Journal = 8,
    /// A checkpoint.
    Checkpoint = 9,
    /// An outbox row.
    Outbox = 10,
    /// A dead letter.
    DeadLetter = 11,
    /// An LLM cache entry.
    LlmCache = 12,
    /// A cold memory segment.
    Segment = 13,
    /// A meta entry (dictionaries, counters, marks).
    Meta = 14,
    /// The agent's own state.
    Agent = 15,
}

impl RecordKind {
    /// Every kind, for iteration.
    pub const ALL: [RecordKind; 15] = [
        Self::Memory,
        Self::MemoryWarm,
        Self::ColdEntry,
        Self::Position,
        Self::Ledger,
        Self::Intent,
        Self::Risk,
        Self::Journal,
        Self::Checkpoint,
        Self::Outbox,
        Self::DeadLetter,
        Self::LlmCache,
        Self::Segment,
        Self::Meta,
        Self::Agent,
    ];

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == v)
    }
}

/// How a payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Plain msgpack (hot records: fastest to read).
    None = 0,
    /// zstd without a dictionary.
    Zstd = 1,
    /// zstd with the kind's current trained dictionary, when one exists (else plain zstd).
    ZstdDict = 2,
}

/// The parsed header of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u8,
    /// Compression used.
    pub compression: Compression,
    /// Record kind.
    pub kind: RecordKind,
    /// Dictionary id, 0 when none.
    pub dictionary: u32,
}

struct Dictionaries {
    decoders: HashMap<u32, Arc<DecoderDictionary<'static>>>,
    /// Current encoder per kind: (dictionary id, prepared dictionary).
    encoders: HashMap<RecordKind, (u32, Arc<EncoderDictionary<'static>>)>,
}

/// Encodes and decodes records; holds the prepared dictionaries. Cheap to share (`Arc`).
pub struct Codec {
    level: i32,
    dicts: RwLock<Dictionaries>,
}

thread_local! {
    static CCTX: RefCell<CCtx<'static>> = RefCell::new(CCtx::create());
    static DCTX: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

impl Codec {
    /// A codec compressing at `level`, with no dictionaries yet.
    pub fn new(level: i32) -> Self {
        Self {
            level,
            dicts: RwLock::new(Dictionaries {
                decoders: HashMap::new(),
                encoders: HashMap::new(),
            }),
        }
    }

    /// Registers dictionary `id` for `kind`; `current` makes it the one new records use.
    pub fn add_dictionary(&self, id: u32, kind: RecordKind, bytes: &[u8], current: bool) {
        let mut d = self.dicts.write().expect("codec lock");
        d.decoders
            .insert(id, Arc::new(DecoderDictionary::copy(bytes)));
        if current {
            d.encoders.insert(
                kind,
                (id, Arc::new(EncoderDictionary::copy(bytes, self.level))),
            );
        }
    }

    /// The dictionary id new records of `kind` are compressed with (0 when none).
    pub fn current_dictionary(&self, kind: RecordKind) -> u32 {
        self.dicts
            .read()
            .expect("codec lock")
            .encoders
            .get(&kind)
            .map_or(0, |(id, _)| *id)
    }

    /// Whether dictionary `id` is loaded.
    pub fn has_dictionary(&self, id: u32) -> bool {
        self.dicts
            .read()
            .expect("codec lock")
            .decoders
            .contains_key(&id)
    }

    /// Serializes `value` as msgpack without a header (what dictionaries are trained on).
    pub fn to_msgpack<T: Serialize>(value: &T) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(value).map_err(|e| StoreError::Invalid(format!("encode: {e}")))
    }

    /// Encodes `value` as a record of `kind`.
    pub fn encode<T: Serialize>(
        &self,
        kind: RecordKind,
        compression: Compression,
        value: &T,
    ) -> Result<Vec<u8>> {
        if compression == Compression::None {
            // Serialized straight behind the header: no intermediate buffer and copy.
            let mut out = Vec::with_capacity(PLAIN_RECORD_CAPACITY);
            out.extend_from_slice(&header_template(kind));
            rmp_serde::encode::write_named(&mut out, value)
                .map_err(|e| StoreError::Invalid(format!("encode: {e}")))?;
            return Ok(seal(out, Compression::None, 0));
        }
        let raw = Self::to_msgpack(value)?;
        self.encode_bytes(kind, compression, &raw)
    }

    /// Wraps already-serialized `raw` bytes as a record of `kind`.
    pub fn encode_bytes(
        &self,
        kind: RecordKind,
        compression: Compression,
        raw: &[u8],
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(HEADER_LEN + raw.len());
        out.extend_from_slice(&header_template(kind));
        let (used, dict_id) = match compression {
            Compression::None => {
                out.extend_from_slice(raw);
                (Compression::None, 0)
            }
            Compression::Zstd | Compression::ZstdDict => {
                let encoder = if compression == Compression::ZstdDict {
                    self.dicts
                        .read()
                        .expect("codec lock")
                        .encoders
                        .get(&kind)
                        .cloned()
                } else {
                    None
                };
                // zstd writes from the start of the buffer it is given: compress apart, then append.
                let mut packed = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
                let res = CCTX.with(|c| {
                    let mut cctx = c.borrow_mut();
                    match &encoder {
                        Some((_, dict)) => {
                            cctx.compress_using_cdict(&mut packed, raw, dict.as_cdict())
                        }
                        None => cctx.compress(&mut packed, raw, self.level),
                    }
                });
                res.map_err(|code| StoreError::Invalid(format!("zstd compress failed: {code}")))?;
                out.extend_from_slice(&packed);
                match encoder {
                    Some((id, _)) => (Compression::ZstdDict, id),
                    None => (Compression::Zstd, 0),
                }
            }
        };
        Ok(seal(out, used, dict_id))
    }

    /// The kind a stored record's header names, read without checking anything else (`None`
    /// for bytes too short or a kind this build does not know).
    pub fn kind_of(bytes: &[u8]) -> Option<RecordKind> {
        (bytes.len() >= HEADER_LEN && bytes[0] == MAGIC)
            .then(|| RecordKind::from_u8(bytes[3]))
            .flatten()
    }

    /// Checks the header and checksum of a stored record; returns the header.
    pub fn verify(bytes: &[u8]) -> std::result::Result<Header, CodecError> {
        if bytes.len() < HEADER_LEN {
            return Err(CodecError::Short(bytes.len()));
        }
        if bytes[0] != MAGIC {
            return Err(CodecError::Magic(bytes[0]));
        }
        let stored = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let actual = checksum(&bytes[..8], &bytes[HEADER_LEN..]);
        if stored != actual {
            return Err(CodecError::Checksum {
                stored,
                computed: actual,
            });
        }
        if bytes[1] == 0 || bytes[1] > FORMAT_VERSION {
            return Err(CodecError::Version(bytes[1]));
        }
        let compression = match bytes[2] {
            0 => Compression::None,
            1 => Compression::Zstd,
            2 => Compression::ZstdDict,
            c => return Err(CodecError::Compression(c)),
        };
        let kind = RecordKind::from_u8(bytes[3]).ok_or(CodecError::Kind(bytes[3]))?;
        let dictionary = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        Ok(Header {
            version: bytes[1],
            compression,
            kind,
            dictionary,
        })
    }

    /// Verifies and decompresses a record into its msgpack bytes.
    pub fn decode_bytes(&self, bytes: &[u8]) -> std::result::Result<(Header, Vec<u8>), CodecError> {
        let header = Self::verify(bytes)?;
        Ok((header, self.decompress(header, &bytes[HEADER_LEN..])?))
    }

    fn decompress(
        &self,
        header: Header,
        payload: &[u8],
    ) -> std::result::Result<Vec<u8>, CodecError> {
        let raw = match header.compression {
            Compression::None => payload.to_vec(),
            Compression::Zstd | Compression::ZstdDict => {
                let size = zstd::zstd_safe::get_frame_content_size(payload)
                    .map_err(|_| CodecError::FrameHeader)?
                    .ok_or(CodecError::NoContentSize)?;
                if size > MAX_DECODED {
                    return Err(CodecError::TooLarge(size));
                }
                let mut out = Vec::with_capacity(size as usize);
                let res = if header.compression == Compression::ZstdDict {
                    let dict = self
                        .dicts
                        .read()
                        .expect("codec lock")
                        .decoders
                        .get(&header.dictionary)
                        .cloned()
                        .ok_or(CodecError::MissingDictionary(header.dictionary))?;
                    DCTX.with(|d| {
                        d.borrow_mut()
                            .decompress_using_ddict(&mut out, payload, dict.as_ddict())
                    })
                } else {
                    DCTX.with(|d| d.borrow_mut().decompress(&mut out, payload))
                };
                res.map_err(|code| CodecError::Decompress(code.to_string()))?;
                out
            }
        };
        Ok(raw)
    }

    /// Verifies, decompresses and deserializes a record.
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> std::result::Result<T, CodecError> {
        let header = Self::verify(bytes)?;
        let payload = &bytes[HEADER_LEN..];
        let result = if header.compression == Compression::None {
            rmp_serde::from_slice(payload) // hot records: no copy
        } else {
            rmp_serde::from_slice(&self.decompress(header, payload)?)
        };
        result.map_err(CodecError::Decode)
    }
}

/// First allocation for a plain record serialized in place: most records fit, so the buffer
/// seldom grows.
const PLAIN_RECORD_CAPACITY: usize = 1024;

/// A header for a record of `kind`, its compression, dictionary and checksum still blank.
fn header_template(kind: RecordKind) -> [u8; HEADER_LEN] {
    [MAGIC, FORMAT_VERSION, 0, kind as u8, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Completes the header of `record` (header then payload): compression, dictionary, checksum.
fn seal(mut record: Vec<u8>, compression: Compression, dictionary: u32) -> Vec<u8> {
    record[2] = compression as u8;
    record[4..8].copy_from_slice(&dictionary.to_le_bytes());
    let crc = checksum(&record[..8], &record[HEADER_LEN..]);
    record[8..12].copy_from_slice(&crc.to_le_bytes());
    record
}

/// Why a stored record cannot be read; the store names its table and key
/// ([`crate::StoreError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Fewer bytes than a header.
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    /// Not a record of ours.
    #[error("bad magic byte {0:#04x}")]
    Magic(u8),
    /// The bytes changed since they were written.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// A format this build does not read.
    #[error("unsupported record format version {0}")]
    Version(u8),
    /// An unknown compression byte.
    #[error("unknown compression {0}")]
    Compression(u8),
    /// An unknown record kind byte.
    #[error("unknown record kind {0}")]
    Kind(u8),
    /// The zstd frame header does not parse.
    #[error("zstd frame header unreadable")]
    FrameHeader,
    /// A zstd frame that does not say its size (we always write it).
    #[error("zstd frame without content size")]
    NoContentSize,
    /// A frame claiming more than a record may hold.
    #[error("decoded size {0} exceeds the limit")]
    TooLarge(u64),
    /// The dictionary the record was compressed with is not in the store.
    #[error("dictionary {0} is missing")]
    MissingDictionary(u32),
    /// zstd refused the frame (its error code's name).
    #[error("zstd decompress failed: {0}")]
    Decompress(String),
    /// The payload is not the msgpack of the expected type (the detail is in the message too:
    /// a corrupt record's reason is stored as text).
    #[error("msgpack decode failed: {0}")]
    Decode(#[source] rmp_serde::decode::Error),
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        id: u64,
        text: String,
        values: Vec<f64>,
        tag: Option<String>,
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            any::<u64>(),
            ".{0,200}",
            proptest::collection::vec(-1e9f64..1e9, 0..20),
            proptest::option::of("[a-z_]{1,12}"),
        )
            .prop_map(|(id, text, values, tag)| Sample {
                id,
                text,
                values,
                tag,
            })
    }

    fn dictionary_from(samples: &[Sample]) -> Vec<u8> {
        let raw: Vec<Vec<u8>> = samples
            .iter()
            .map(|s| Codec::to_msgpack(s).unwrap())
            .collect();
        zstd::dict::from_samples(&raw, 4096).unwrap()
    }

    fn training_set() -> Vec<Sample> {
        (0..300)
            .map(|i| Sample {
                id: i,
                text: format!(
                    "pool WETH/USDC apr {} tvl {} volume spike observed",
                    i % 17,
                    i * 31
                ),
                values: vec![i as f64, 1.5, 2.5],
                tag: Some("pool_behavior".into()),
            })
            .collect()
    }

    proptest! {
        // Dictionary training per case is slow in debug builds; 128 cases keep the suite quick.
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn round_trip_every_compression(s in sample()) {
            let codec = Codec::new(3);
            for c in [Compression::None, Compression::Zstd, Compression::ZstdDict] {
                let bytes = codec.encode(RecordKind::Memory, c, &s).unwrap();
                prop_assert_eq!(codec.decode::<Sample>(&bytes).unwrap(), s.clone());
            }
        }

        #[test]
        fn round_trip_with_dictionaries_across_a_change(s in sample()) {
            let codec = Codec::new(3);
            let set = training_set();
            codec.add_dictionary(1, RecordKind::Memory, &dictionary_from(&set), true);
            let old = codec.encode(RecordKind::Memory, Compression::ZstdDict, &s).unwrap();
            prop_assert_eq!(Codec::verify(&old).unwrap().dictionary, 1);
            // A newer dictionary becomes current; records under the old one stay readable.
            let newer: Vec<Sample> = set.iter().map(|x| Sample { text: x.text.to_uppercase(), ..x.clone() }).collect();
            codec.add_dictionary(2, RecordKind::Memory, &dictionary_from(&newer), true);
            let new = codec.encode(RecordKind::Memory, Compression::ZstdDict, &s).unwrap();
            prop_assert_eq!(Codec::verify(&new).unwrap().dictionary, 2);
            prop_assert_eq!(codec.decode::<Sample>(&old).unwrap(), s.clone());
            prop_assert_eq!(codec.decode::<Sample>(&new).unwrap(), s);
        }

        #[test]
        fn any_flipped_bit_is_detected(s in sample(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let codec = Codec::new(3);
            let mut bytes = codec.encode(RecordKind::Memory, Compression::Zstd, &s).unwrap();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(codec.decode::<Sample>(&bytes).is_err());
        }
    }

    #[test]
    fn missing_dictionary_is_reported_not_guessed() {
        let codec = Codec::new(3);
        codec.add_dictionary(
            7,
            RecordKind::Memory,
            &dictionary_from(&training_set()),
            true,
        );
        let bytes = codec
            .encode(
                RecordKind::Memory,
                Compression::ZstdDict,
                &training_set()[3],
            )
            .unwrap();
        let fresh = Codec::new(3);
        let err = fresh.decode::<Sample>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::MissingDictionary(7)), "{err}");
    }

    #[test]
    fn dictionary_makes_small_records_smaller() {
        let codec = Codec::new(3);
        let set = training_set();
        let plain: usize = set
            .iter()
            .map(|s| {
                codec
                    .encode(RecordKind::Memory, Compression::Zstd, s)
                    .unwrap()
                    .len()
            })
            .sum();
        codec.add_dictionary(1, RecordKind::Memory, &dictionary_from(&set), true);
        let dict: usize = set
            .iter()
            .map(|s| {
                codec
                    .encode(RecordKind::Memory, Compression::ZstdDict, s)
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(dict * 2 < plain, "dictionary {dict} vs plain {plain}");
    }
}
