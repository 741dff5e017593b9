//! The weight initialiser of the reference: NumPy's legacy `RandomState(seed)`.
//!
//! KitNET-py draws every autoencoder's initial `W` from a fresh
//! `numpy.random.RandomState(1234).uniform(-1/n_visible, 1/n_visible)`. To
//! reproduce its scores we need the same bits, so this is MT19937 seeded with
//! the classic `init_genrand` and NumPy's 53-bit `random_sample` (two 32-bit
//! outputs per double). No other generator is needed anywhere in `kitnet`, so
//! no `rand` dependency.

/// Mersenne Twister MT19937 (Matsumoto & Nishimura), 32-bit outputs.
#[derive(Clone, Debug)]
pub(crate) struct Mt19937 {
    state: [u32; N],
    pos: usize,
}

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

impl Mt19937 {
    /// `init_genrand(seed)`, which is also what `RandomState(seed)` does for
    /// an integer seed.
    pub(crate) fn new(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, pos: N }
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & UPPER_MASK) | (self.state[(i + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.pos = 0;
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.pos >= N {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// NumPy's `random_sample`: a double in [0, 1) with 53 random bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) / 9_007_199_254_740_992.0
    }

    /// NumPy's legacy `uniform(low, high)`: `low + (high - low) * u`.
    pub(crate) fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_mt19937_outputs() {
        // First outputs of the reference mt19937ar.c after init_genrand(5489),
        // the generator's documented default seed.
        let mut mt = Mt19937::new(5489);
        let first: Vec<u32> = (0..5).map(|_| mt.next_u32()).collect();
        assert_eq!(
            first,
            vec![
                3_499_211_612,
                581_869_302,
                3_890_346_734,
                3_586_334_585,
                545_404_204
            ]
        );
        // The 10000th output is the classic check value of MT19937.
        let mut mt = Mt19937::new(5489);
        let v = (0..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(v, Some(4_123_659_995));
    }

    #[test]
    fn uniform_stays_in_range() {
        let mut mt = Mt19937::new(1234);
        for _ in 0..1000 {
            let u = mt.uniform(-0.25, 0.25);
            assert!((-0.25..0.25).contains(&u));
        }
    }
}
