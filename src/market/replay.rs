//! Replay: market ticks from a JSONL file, one [`MarketTick`] per line (what
//! `athena sim record` writes). Lines are read as they are needed; a tick missing from the
//! file, or a line that does not parse, is an error naming the line.

use crate::market::{MarketSource, MarketTick};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// A JSONL replay.
pub struct Replay {
    lines: std::io::Lines<BufReader<std::fs::File>>,
    line: u64,
    path: String,
}

impl Replay {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        let f = std::fs::File::open(path)
            .map_err(|e| format!("replay file {}: {e}", path.display()))?;
        Ok(Self {
            lines: BufReader::new(f).lines(),
            line: 0,
            path: path.display().to_string(),
        })
    }
}

impl MarketSource for Replay {
    fn tick(&mut self, index: u64) -> Result<MarketTick, String> {
        loop {
            let Some(line) = self.lines.next() else {
                return Err(format!("{}: ends before tick {index}", self.path));
            };
            self.line += 1;
            let line = line.map_err(|e| format!("{}:{}: {e}", self.path, self.line))?;
            if line.trim().is_empty() {
                continue;
            }
            let t: MarketTick = serde_json::from_str(&line)
                .map_err(|e| format!("{}:{}: not a market tick: {e}", self.path, self.line))?;
            match t.index.cmp(&index) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(t),
                std::cmp::Ordering::Greater => {
                    return Err(format!(
                        "{}:{}: tick {} where tick {index} was expected",
                        self.path, self.line, t.index
                    ));
                }
            }
        }
    }
}

/// Writes `ticks` ticks of `source` to `out` as JSONL; returns the bytes written.
pub fn record(source: &mut dyn MarketSource, ticks: u64, out: &Path) -> Result<u64, String> {
    let f = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let mut bytes = 0u64;
    for i in 0..ticks {
        let line = serde_json::to_string(&source.tick(i)?).map_err(|e| e.to_string())?;
        bytes += line.len() as u64 + 1;
        writeln!(w, "{line}").map_err(|e| format!("{}: {e}", out.display()))?;
    }
    w.flush().map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::sim::Sim;

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
        assert!(replay.tick(20).unwrap_err().contains("ends before tick 20"));
        std::fs::write(&path, "{\"index\": 0}\n").unwrap();
        let e = Replay::open(&path).unwrap().tick(0).unwrap_err();
        assert!(e.contains("m.jsonl:1: not a market tick"), "{e}");
    }
}
