//! Replay: market ticks from a JSONL file, one [`MarketTick`] per line (what
//! `athena sim record` writes). Lines are read as they are needed and each is validated before
//! it is used: it parses as a tick, every figure passes [`MarketTick::check`], `at_ms` is
//! strictly increasing and indexes go forward (an identical line repeated is skipped; a
//! different line with the same index is an error). A bad line, a missing tick or the end of
//! the file is a [`MarketError`] naming file and line; it is final: asked again, the replay
//! gives the same error, never the next good line. The last tick given is kept, so a tick
//! that failed after reading it (the store, say) can ask for it again.

use crate::market::{LineProblem, MarketError, MarketSource, MarketTick};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A JSONL replay.
pub struct Replay {
    lines: std::io::Lines<BufReader<std::fs::File>>,
    /// Lines read so far.
    line: u64,
    path: PathBuf,
    /// The last tick read and its line.
    last: Option<(MarketTick, u64)>,
    /// The error the replay stopped at, given again to every later call.
    failed: Option<MarketError>,
}

impl Replay {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, MarketError> {
        let f = std::fs::File::open(path).map_err(|e| MarketError::Unopenable {
            path: path.to_path_buf(),
            source: Arc::new(e),
        })?;
        Ok(Self {
            lines: BufReader::new(f).lines(),
            line: 0,
            path: path.to_path_buf(),
            last: None,
            failed: None,
        })
    }

    /// The next tick of the file (validated against the previous one), `None` at its end.
    fn next_tick(&mut self) -> Result<Option<MarketTick>, MarketError> {
        loop {
            let Some(text) = self.lines.next() else {
                return Ok(None);
            };
            self.line += 1;
            let text = text.map_err(|e| self.bad(LineProblem::Unreadable(Arc::new(e))))?;
            if text.trim().is_empty() {
                continue;
            }
            let t: MarketTick = serde_json::from_str(&text)
                .map_err(|e| self.bad(LineProblem::NotATick(Arc::new(e))))?;
            t.check().map_err(|(pool, problem)| {
                self.bad(match pool {
                    Some(pool) => LineProblem::BadPoolFigure {
                        index: t.index,
                        pool,
                        problem,
                    },
                    None => LineProblem::BadTickFigure {
                        index: t.index,
                        problem,
                    },
                })
            })?;
            if let Some((prev, prev_line)) = &self.last {
                if *prev == t {
                    // The same line written twice (a recorder restarted, say): harmless.
                    continue;
                }
                let problem = if t.index == prev.index {
                    Some(LineProblem::DuplicateIndex {
                        index: t.index,
                        first_line: *prev_line,
                    })
                } else if t.index < prev.index {
                    Some(LineProblem::IndexBackwards {
                        index: t.index,
                        previous: prev.index,
                    })
                } else if t.at_ms <= prev.at_ms {
                    Some(LineProblem::TimeNotIncreasing {
                        index: t.index,
                        at_ms: t.at_ms,
                        previous_ms: prev.at_ms,
                    })
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(self.bad(problem));
                }
            }
            self.last = Some((t.clone(), self.line));
            return Ok(Some(t));
        }
    }

    fn bad(&self, problem: LineProblem) -> MarketError {
        MarketError::BadLine {
            path: self.path.clone(),
            line: self.line,
            problem,
        }
    }

    fn find(&mut self, index: u64) -> Result<MarketTick, MarketError> {
        match &self.last {
            Some((t, _)) if t.index == index => return Ok(t.clone()),
            Some((t, _)) if t.index > index => {
                return Err(MarketError::Behind {
                    at: t.index + 1,
                    index,
                });
            }
            _ => {}
        }
        loop {
            let Some(t) = self.next_tick()? else {
                return Err(MarketError::Ended {
                    path: self.path.clone(),
                    lines: self.line,
                    index,
                });
            };
            match t.index.cmp(&index) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(t),
                std::cmp::Ordering::Greater => {
                    return Err(self.bad(LineProblem::Gap {
                        index: t.index,
                        expected: index,
                    }));
                }
            }
        }
    }
}

impl MarketSource for Replay {
    fn tick(&mut self, index: u64) -> Result<MarketTick, MarketError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.find(index);
        if let Err(e) = &result
            && e.is_final()
            && !matches!(e, MarketError::Behind { .. })
        {
            self.failed = Some(e.clone());
        }
        result
    }
}

/// Agent time of the first tick of the replay at `path`: where a run on it starts.
pub fn first_at_ms(path: &Path) -> Result<u64, MarketError> {
    let mut replay = Replay::open(path)?;
    match replay.next_tick()? {
        Some(t) => Ok(t.at_ms),
        None => Err(MarketError::Ended {
            path: path.to_path_buf(),
            lines: replay.line,
            index: 0,
        }),
    }
}

/// Why `athena sim record` failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The source gave no tick.
    #[error(transparent)]
    Market(#[from] MarketError),
    /// The file cannot be written.
    #[error("{}", path.display())]
    Write {
        /// File.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A tick cannot be encoded.
    #[error("encode a tick")]
    Encode(#[from] serde_json::Error),
}

/// Writes `ticks` ticks of `source` to `out` as JSONL; returns the bytes written.
pub fn record(source: &mut dyn MarketSource, ticks: u64, out: &Path) -> Result<u64, RecordError> {
    let write = |source| RecordError::Write {
        path: out.to_path_buf(),
        source,
    };
    let f = std::fs::File::create(out).map_err(write)?;
    let mut w = std::io::BufWriter::new(f);
    let mut bytes = 0u64;
    for i in 0..ticks {
        let line = serde_json::to_string(&source.tick(i)?)?;
        bytes += line.len() as u64 + 1;
        writeln!(w, "{line}").map_err(write)?;
    }
    w.flush().map_err(write)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::sim::Sim;

    fn lines(dir: &Path, ticks: &[MarketTick]) -> PathBuf {
        let path = dir.join("m.jsonl");
        let text: Vec<String> = ticks
            .iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect();
        std::fs::write(&path, text.join("\n") + "\n").unwrap();
        path
    }

    fn sim_ticks(n: u64) -> Vec<MarketTick> {
        let mut sim = Sim::new(3, 0, 300_000);
        (0..n).map(|i| sim.tick(i).unwrap()).collect()
    }

    /// The error of asking `path` for ticks 0.. until one fails; asked twice, the same error.
    fn first_error(path: &Path) -> String {
        let mut replay = Replay::open(path).unwrap();
        for i in 0.. {
            if let Err(e) = replay.tick(i) {
                assert!(e.is_final(), "{e}");
                let again = replay.tick(i).unwrap_err();
                assert_eq!(again.to_string(), e.to_string(), "the same error again");
                return format!("{:#}", anyhow::Error::new(e));
            }
        }
        unreachable!()
    }

    #[test]
    fn a_recorded_sim_replays_bit_for_bit_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        record(&mut Sim::new(3, 0, 300_000), 20, &path).unwrap();
        let mut replay = Replay::open(&path).unwrap();
        let mut sim = Sim::new(3, 0, 300_000);
        for i in [0, 1, 5, 19] {
            assert_eq!(replay.tick(i).unwrap(), sim.tick(i).unwrap());
        }
        assert_eq!(replay.tick(19).unwrap().index, 19, "the last tick again");
        let e = replay.tick(20).unwrap_err();
        assert!(matches!(e, MarketError::Ended { lines: 20, .. }), "{e}");
        assert!(
            e.to_string()
                .contains("m.jsonl:20: the replay ends before tick 20")
        );
        std::fs::write(&path, "{\"index\": 0}\n").unwrap();
        let e = first_error(&path);
        assert!(
            e.contains("m.jsonl:1: not a market tick: missing field"),
            "{e}"
        );
    }

    #[test]
    fn every_bad_figure_is_an_error_naming_file_line_pool_and_field() {
        let dir = tempfile::tempdir().unwrap();
        type Spoil = fn(&mut MarketTick);
        let cases: [(&str, Spoil); 7] = [
            ("pool WETH/USDC: tvl_usd is -5", |t| {
                t.pools[0].tvl_usd = -5.0
            }),
            ("pool WETH/DAI: reserves[1] is -1", |t| {
                t.pools[1].reserves[1] = -1.0
            }),
            ("pool AERO/USDC: prices_usd[0] is 0", |t| {
                t.pools[2].prices_usd[0] = 0.0
            }),
            ("pool USDC/DAI: volume_24h_usd is -3", |t| {
                t.pools[4].volume_24h_usd = -3.0
            }),
            ("pool AERO/WETH: fee_apr_pct is -0.5", |t| {
                t.pools[3].fee_apr_pct = -0.5
            }),
            ("pool USDC/USDbC: emission_apr_pct is -2", |t| {
                t.pools[5].emission_apr_pct = -2.0
            }),
            ("tick 3: gas_gwei is -1", |t| t.gas_gwei = -1.0),
        ];
        for (want, spoil) in cases {
            let mut ticks = sim_ticks(6);
            spoil(&mut ticks[3]);
            let e = first_error(&lines(dir.path(), &ticks));
            assert!(e.contains("m.jsonl:4: tick 3"), "{e}");
            assert!(e.contains(want), "{want}: {e}");
        }
        // JSON has no NaN or infinity: such a figure does not parse.
        let mut ticks = sim_ticks(3);
        ticks[1].pools[0].tvl_usd = f64::NAN;
        let path = lines(dir.path(), &ticks);
        let e = first_error(&path);
        assert!(e.contains("m.jsonl:2: not a market tick"), "{e}");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"gas_gwei\":", "\"gas_gwei\":1e999,\"x\":");
        std::fs::write(&path, text).unwrap();
        let e = first_error(&path);
        assert!(e.contains("m.jsonl:1: not a market tick"), "{e}");
    }

    #[test]
    fn time_must_increase_and_one_index_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        // An identical line repeated is skipped.
        let mut ticks = sim_ticks(4);
        ticks.insert(2, ticks[1].clone());
        let mut replay = Replay::open(&lines(dir.path(), &ticks)).unwrap();
        for i in 0..4 {
            assert_eq!(
                replay.tick(i).unwrap(),
                ticks[if i < 2 { i } else { i + 1 } as usize]
            );
        }
        // A different line with the same index.
        let mut ticks = sim_ticks(4);
        let mut other = ticks[1].clone();
        other.gas_gwei += 1.0;
        ticks.insert(2, other);
        let e = first_error(&lines(dir.path(), &ticks));
        assert!(
            e.contains("m.jsonl:3: a second, different tick 1 (the first is line 2)"),
            "{e}"
        );
        // Time standing still or going back.
        let mut ticks = sim_ticks(4);
        ticks[2].at_ms = ticks[1].at_ms;
        let e = first_error(&lines(dir.path(), &ticks));
        assert!(
            e.contains("m.jsonl:3: tick 2 at_ms 300000 is not after"),
            "{e}"
        );
        // An index going back, and a gap.
        let mut ticks = sim_ticks(4);
        ticks[2].index = 0;
        let e = first_error(&lines(dir.path(), &ticks));
        assert!(e.contains("m.jsonl:3: tick 0 after tick 1"), "{e}");
        let mut ticks = sim_ticks(4);
        ticks.remove(2);
        let e = first_error(&lines(dir.path(), &ticks));
        assert!(
            e.contains("m.jsonl:3: tick 3 where tick 2 was expected"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_line_is_given_again_never_the_next_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut ticks = sim_ticks(8);
        ticks[2].pools[0].tvl_usd = -1.0;
        let mut replay = Replay::open(&lines(dir.path(), &ticks)).unwrap();
        replay.tick(0).unwrap();
        replay.tick(1).unwrap();
        for _ in 0..5 {
            let e = format!("{:#}", anyhow::Error::new(replay.tick(2).unwrap_err()));
            assert!(e.starts_with(&format!(
                "{}:3: tick 2",
                dir.path().join("m.jsonl").display()
            )));
        }
        assert!(replay.tick(3).is_err(), "the replay stops at the bad line");
        assert_eq!(first_at_ms(&lines(dir.path(), &ticks)).unwrap(), 0);
    }
}
