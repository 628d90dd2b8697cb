//! Special functions shared by the target language, the activations and the theory.

/// Probabilists' Hermite polynomial `He_k(x)` by the three-term recurrence.
#[inline]
pub fn hermite(k: u32, x: f64) -> f64 {
    match k {
        0 => 1.0,
        1 => x,
        _ => {
            let (mut h0, mut h1) = (1.0, x);
            for j in 1..k {
                let h2 = x * h1 - j as f64 * h0;
                h0 = h1;
                h1 = h2;
            }
            h1
        }
    }
}
