//! Pair contracts: UniswapV2 pairs and Solidly (Aerodrome) pools behind one [`Curve`].
//!
//! Both answer `getReserves()` with the two reserves in their first two words (UniswapV2
//! returns `(uint112, uint112, uint32)`, Solidly `(uint256, uint256, uint256)`; the ABI pads
//! each to 32 bytes, so one decoder reads both), and both emit a `Swap` event whose data is
//! `amount0In, amount1In, amount0Out, amount1Out` (the indexed addresses differ in order, so
//! the two event signatures differ). The spot price differs: a constant product for UniswapV2
//! and volatile Solidly pools, the `x³y + xy³` curve for stable Solidly pools.

use alloy::primitives::{B256, U256, keccak256};
use alloy::sol;

sol! {
    /// `getReserves()`, read as three words.
    function getReserves() external view returns (uint256 reserve0, uint256 reserve1, uint256 last);
    /// The pair's first token.
    function token0() external view returns (address);
    /// The pair's second token.
    function token1() external view returns (address);
    /// A token's decimals.
    function decimals() external view returns (uint8);
    /// A token's symbol.
    function symbol() external view returns (string);
    /// A Solidly pool's curve.
    function stable() external view returns (bool);
    /// A Solidly pool's factory.
    function factory() external view returns (address);
    /// A Solidly factory's fee for a pool, in basis points.
    function getFee(address pool, bool stable) external view returns (uint256);
}

/// UniswapV2's `Swap(address indexed sender, uint amount0In, uint amount1In, uint amount0Out,
/// uint amount1Out, address indexed to)`.
pub fn uniswap_v2_swap_topic() -> B256 {
    keccak256("Swap(address,uint256,uint256,uint256,uint256,address)")
}

/// Solidly's `Swap(address indexed sender, address indexed to, uint256 amount0In, uint256
/// amount1In, uint256 amount0Out, uint256 amount1Out)`.
pub fn solidly_swap_topic() -> B256 {
    keccak256("Swap(address,address,uint256,uint256,uint256,uint256)")
}

/// How a pair prices one token in the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// `x·y = k` (UniswapV2, volatile Solidly pools).
    ConstantProduct,
    /// `x³y + xy³ = k` (stable Solidly pools).
    Stable,
}

impl Curve {
    /// Units of token1 one unit of token0 is worth at the margin, from the reserves in whole
    /// tokens (decimals applied).
    pub fn spot_price0_in_1(self, x: f64, y: f64) -> f64 {
        match self {
            Self::ConstantProduct => y / x,
            // dy/dx of x³y + xy³ = k: (3x²y + y³) / (x³ + 3xy²).
            Self::Stable => (3.0 * x * x * y + y * y * y) / (x * x * x + 3.0 * x * y * y),
        }
    }

    /// What `amount_in` whole tokens sold into a pool with reserves `reserve_in` and
    /// `reserve_out` (whole tokens) give out, after the fee `fee_rate` is taken from the input:
    /// UniswapV2's `getAmountOut`, or Aerodrome's for a stable pool (the `x³y + xy³` curve
    /// solved for the new `y` by Newton's method, as its `_get_y` does).
    pub fn amount_out(
        self,
        amount_in: f64,
        reserve_in: f64,
        reserve_out: f64,
        fee_rate: f64,
    ) -> f64 {
        let paid = amount_in * (1.0 - fee_rate);
        match self {
            Self::ConstantProduct => reserve_out * paid / (reserve_in + paid),
            Self::Stable => {
                let k = stable_k(reserve_in, reserve_out);
                let x = reserve_in + paid;
                // f(y) = x·y·(x² + y²) − k falls to 0 from y = reserve_out: it is increasing
                // and convex in y, so Newton's steps go down monotonically to the root.
                let mut y = reserve_out;
                for _ in 0..255 {
                    let f = stable_k(x, y) - k;
                    let step = f / (x * x * x + 3.0 * x * y * y);
                    y -= step;
                    if step.abs() <= y * 1e-15 {
                        break;
                    }
                }
                (reserve_out - y).max(0.0)
            }
        }
    }
}

/// The stable curve's invariant `x³y + xy³`.
fn stable_k(x: f64, y: f64) -> f64 {
    x * y * (x * x + y * y)
}

/// A raw token amount in whole tokens.
pub fn whole(amount: U256, decimals: u8) -> f64 {
    let v: f64 = amount.into();
    v / 10f64.powi(i32::from(decimals))
}

/// The first two words of a `getReserves()` answer.
pub fn reserves(data: &[u8]) -> Result<(U256, U256), String> {
    use alloy::sol_types::SolCall;
    let r = getReservesCall::abi_decode_returns(data).map_err(|e| format!("getReserves: {e}"))?;
    Ok((r.reserve0, r.reserve1))
}

/// The amounts of a `Swap` event's data: `[amount0In, amount1In, amount0Out, amount1Out]`.
pub fn swap_amounts(data: &[u8]) -> Result<[U256; 4], String> {
    if data.len() != 128 {
        return Err(format!("Swap data of {} bytes, not 128", data.len()));
    }
    let word = |i: usize| U256::from_be_slice(&data[i * 32..(i + 1) * 32]);
    Ok([word(0), word(1), word(2), word(3)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_swap_topics_are_the_events_keccak() {
        // The same hashes computed with viem's keccak256 (chain/node_modules).
        assert_eq!(
            uniswap_v2_swap_topic().to_string(),
            "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
        );
        assert_eq!(
            solidly_swap_topic().to_string(),
            "0xb3e2773606abfd36b5bd91394b3a54d1398336c65005baf7bf7a05efeffaf75b"
        );
    }

    #[test]
    fn a_uniswap_v2_answer_and_a_solidly_answer_decode_alike() {
        // getReserves() of a UniswapV2 pair: (uint112 1e24, uint112 3e9, uint32 1700000000).
        let hex = concat!(
            "00000000000000000000000000000000000000000000d3c21bcecceda1000000",
            "00000000000000000000000000000000000000000000000000000000b2d05e00",
            "000000000000000000000000000000000000000000000000000000006553f100"
        );
        let data = alloy::hex::decode(hex).unwrap();
        let (r0, r1) = reserves(&data).unwrap();
        assert_eq!(whole(r0, 18), 1_000_000.0);
        assert_eq!(whole(r1, 6), 3_000.0);
    }

    #[test]
    fn a_balanced_stable_pool_prices_one_for_one_and_flatter_than_a_product() {
        let stable = Curve::Stable.spot_price0_in_1(1_000_000.0, 1_000_000.0);
        assert!((stable - 1.0).abs() < 1e-12);
        // 10% out of balance: the stable curve stays much nearer to 1 than x·y.
        let s = Curve::Stable.spot_price0_in_1(1_100_000.0, 900_000.0);
        let p = Curve::ConstantProduct.spot_price0_in_1(1_100_000.0, 900_000.0);
        assert!(p < s && s < 1.0, "{p} < {s} < 1");
        assert!((s - 0.998_002).abs() < 1e-6, "{s}");
    }

    #[test]
    fn a_stable_swap_keeps_the_invariant_and_gives_more_than_a_product_near_the_peg() {
        let (x, y) = (1_000_000.0, 1_020_000.0);
        let out = Curve::Stable.amount_out(10_000.0, x, y, 0.0005);
        let paid = 10_000.0 * (1.0 - 0.0005);
        let (k0, k1) = (stable_k(x, y), stable_k(x + paid, y - out));
        assert!((k1 - k0).abs() / k0 < 1e-12, "k {k0} → {k1}");
        assert!(out > paid && out < paid * 1.02, "{paid} < {out}");
        // Balanced, the stable curve gives nearly one for one, a product 1% less.
        let stable = Curve::Stable.amount_out(10_000.0, x, x, 0.0005);
        let product = Curve::ConstantProduct.amount_out(10_000.0, x, x, 0.0005);
        assert!(
            product < paid * 0.991 && stable > paid * 0.999,
            "{product} < {stable}"
        );
        // Aerodrome's own answer on the devnet's fresh sAMM-USDC/DAI pool: getAmountOut of
        // 1,000 USDC (fee 0.05%, reserves 1,000,000 USDC and 1,000,000 DAI) is
        // 999499999500999250748 wei of DAI.
        let devnet = Curve::Stable.amount_out(1_000.0, 1_000_000.0, 1_000_000.0, 0.0005);
        assert!((devnet - 999.499_999_500_999).abs() < 1e-8, "{devnet}");
        // A product pair: UniswapV2's getAmountOut.
        let v2 = Curve::ConstantProduct.amount_out(1_000.0, 1_000_000.0, 3_000_000.0, 0.003);
        assert!((v2 - 2_988.020_9).abs() < 1e-3, "{v2}");
    }

    #[test]
    fn a_swap_event_with_the_wrong_length_is_refused() {
        assert!(swap_amounts(&[0u8; 96]).is_err());
        let mut data = [0u8; 128];
        data[31] = 7;
        data[127] = 9;
        let a = swap_amounts(&data).unwrap();
        assert_eq!(a[0], U256::from(7));
        assert_eq!(a[3], U256::from(9));
    }
}
