//! The labelled prompt pairs of the advisor's entry template (tests/llm_false_hits.rs and
//! benches/llm_advisor.rs): pairs whose numbers moved within, just past and far past each
//! field's tolerance, and sign flips, each labelled by how it was made.

use athena::llm::{ContextLine, Question, Slot, SlotField, Template};
use athena_config::LlmConfig;
use athena_storage::Rng;

/// A pair and its label.
pub struct Pair {
    /// How it was made.
    pub kind: &'static str,
    /// The cached prompt's numbers, in the order of `FIELDS`.
    pub a: [f64; 7],
    /// The asked prompt's numbers.
    pub b: [f64; 7],
    /// Whether the answer to `a` may serve `b`.
    pub same: bool,
}

const FIELDS: [SlotField; 7] = [
    SlotField::AprPct,
    SlotField::AprChangePct,
    SlotField::TvlUsd,
    SlotField::VolumeUsd,
    SlotField::GasUsd,
    SlotField::PriceGapPct,
    SlotField::Positions,
];

/// The entry question with numbers `v`.
pub fn question(v: &[f64; 7]) -> Question {
    Question::new(
        Template::EntryReview,
        vec![
            ("action", "open".into()),
            ("pool", "WETH/USDC".into()),
            ("tokens", "WETH/USDC".into()),
            ("kind", "volatile".into()),
        ],
        FIELDS
            .iter()
            .zip(v)
            .map(|(&field, &value)| Slot { field, value })
            .collect(),
        vec![ContextLine {
            text: "none of its tokens is held in another position".into(),
            relevance: 3,
        }],
    )
}

/// A random base point: APR 1–80 %, change −5…5 points, TVL $50k–$50M, volume, gas, gap,
/// positions 0–4.
fn base(rng: &mut Rng) -> [f64; 7] {
    let u = |rng: &mut Rng| rng.next_u64() as f64 / u64::MAX as f64;
    [
        1.0 + 79.0 * u(rng),
        -5.0 + 10.0 * u(rng),
        5e4 * 1000f64.powf(u(rng)),
        1e4 * 1000f64.powf(u(rng)),
        0.05 + 2.0 * u(rng),
        2.0 * u(rng),
        (5.0 * u(rng)).floor(),
    ]
}

/// The labelled set: for every field, pairs moved within, just past and far past its
/// tolerance, and sign flips.
pub fn labelled(config: &LlmConfig, n_per_kind: usize) -> Vec<Pair> {
    let mut rng = Rng::stream(20_261_128, "llm-false-hits");
    let mut out = Vec::new();
    let tol = |f: SlotField, v: f64| match f.tolerance(&config.tolerance) {
        athena::llm::prompt::Tolerance::Absolute(t) => t,
        athena::llm::prompt::Tolerance::Relative(t) => t * v.abs(),
    };
    for _ in 0..n_per_kind {
        for (i, &field) in FIELDS.iter().enumerate() {
            let a = base(&mut rng);
            let t = tol(field, a[i]);
            let mut moved = |delta: f64, kind: &'static str, same: bool| {
                let mut b = a;
                b[i] = a[i] + delta;
                // A move that would cross zero is its own case (a sign flip), below.
                if b[i].signum() == a[i].signum() || a[i] == 0.0 && b[i] == 0.0 {
                    out.push(Pair { kind, a, b, same });
                }
            };
            if t > 0.0 {
                // Relative tolerances are against the larger value: stay safely inside.
                moved(0.4 * t, "small move (within tolerance)", true);
                moved(-0.4 * t, "small move (within tolerance)", true);
                moved(1.05 * t + 1e-9, "boundary (just past tolerance)", false);
                moved(-1.05 * t - 1e-9, "boundary (just past tolerance)", false);
            }
            moved(10.0 * t.max(0.5), "large move", false);
            if field == SlotField::AprChangePct || field == SlotField::PriceGapPct {
                let mut b = a;
                b[i] = -a[i];
                if a[i] != 0.0 {
                    out.push(Pair {
                        kind: "sign flip",
                        a,
                        b,
                        same: false,
                    });
                }
                // Tiny values either side of zero: within any tolerance, still a flip.
                let (mut a0, mut b0) = (a, a);
                a0[i] = 0.001;
                b0[i] = -0.001;
                out.push(Pair {
                    kind: "sign flip near zero",
                    a: a0,
                    b: b0,
                    same: false,
                });
            }
        }
    }
    out
}
