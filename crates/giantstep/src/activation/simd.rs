//! ReLU's row kernels in AVX-512 ([`super::Activation::output_row`],
//! [`super::Activation::forward_row`] and [`super::Activation::apply_and_add`]): the compiler interleaves the eight lanes of the generic
//! rows into 128-bit shuffles even when allowed 512-bit vectors, so they are written out here.
//! Each lane `l` takes the terms `i ≡ l (mod 8)` in order with one multiply and one add (no
//! fused multiply-add), exactly as the generic rows do; tested bit for bit against them.
//!
//! `unsafe`: intrinsics behind `#[target_feature]`, called only after AVX-512 F was detected,
//! reading and writing whole groups of eight inside the slices' bounds.
#![allow(unsafe_code)]

/// Whether the kernels can run here (AVX-512 F, detected once).
pub(super) fn usable() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether `T` is `U`.
#[cfg(target_arch = "x86_64")]
fn is<T: 'static, U: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
}

/// `Some(call)` with the slice `$h: &[T]` (or `&mut [T]`, with `from_raw_parts_mut` and
/// `as_mut_ptr`) seen as `$rows: &[f32]` or `&[f64]` where `T` is one of them and the kernels can
/// run (AVX-512 F); `None` otherwise.
macro_rules! by_type {
    ($h:ident, $from:ident, $ptr:ident, |$rows:ident| $call:expr) => {{
        if !usable() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let (ptr, len) = ($h.$ptr(), $h.len());
            // SAFETY: AVX-512 F was detected (`usable`); `T` is the type the slice is read as
            // (same type id), so it is the same memory, and the borrow of `$h` covers the slice
            // made from it; the kernels check the other slices' lengths.
            unsafe {
                if is::<T, f32>() {
                    let $rows = std::slice::$from(ptr.cast::<f32>(), len);
                    return Some($call);
                }
                if is::<T, f64>() {
                    let $rows = std::slice::$from(ptr.cast::<f64>(), len);
                    return Some($call);
                }
            }
        }
        None
    }};
}

/// The eight lanes of `Σ c_i max(h_i − b, 0)` over the whole groups of eight of `h` (the
/// remainder is the caller's), or `None` where the kernels cannot run (no AVX-512 F, or `T`
/// neither `f32` nor `f64`).
pub(super) fn relu_output_lanes<T: 'static>(h: &[T], c: &[f64], b: f64) -> Option<[f64; 8]> {
    by_type!(h, from_raw_parts, as_ptr, |rows| x86::relu_output(rows, c, b))
}

/// The eight lanes of `Σ a_i max(h_i − b, 0)` over the whole groups of eight of `h`, each
/// `h_i` of them replaced by `σ'(h_i)` (1 where `h_i − b > 0`, else 0), or `None` (nothing
/// written) where the kernels cannot run.
pub(super) fn relu_forward_lanes<T: 'static>(h: &mut [T], a: &[f64], b: f64) -> Option<[f64; 8]> {
    by_type!(h, from_raw_parts_mut, as_mut_ptr, |rows| x86::relu_forward(rows, a, b))
}

/// `h_i ← max(h_i − b, 0)` (rounded to `T`) and `s_i += h_i·y` over the whole groups of eight of
/// `h`; returns how many entries it did (the rest is the caller's), or `None` (nothing written)
/// where the kernels cannot run.
pub(super) fn relu_apply_add<T: 'static>(h: &mut [T], b: f64, y: f64, s: &mut [f64]) -> Option<usize> {
    by_type!(h, from_raw_parts_mut, as_mut_ptr, |rows| x86::relu_apply_add(
        rows, b, y, s
    ))
}

/// `h_i ← (h_i·e)·a_i` (in f64, rounded to `T`) over the whole groups of eight of `h`; returns
/// how many entries it did, or `None` (nothing written) where the kernels cannot run.
pub(crate) fn scale_row<T: 'static>(h: &mut [T], e: f64, a: &[f64]) -> Option<usize> {
    by_type!(h, from_raw_parts_mut, as_mut_ptr, |rows| x86::scale_row(rows, e, a))
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The two precisions of a row, eight numbers at a time as f64 (exact for f32).
    pub(super) trait Eight: Copy {
        /// Loads `p[0..8]` as eight f64.
        ///
        /// # Safety
        /// AVX-512 F; `p[0..8]` readable.
        unsafe fn load(p: *const Self) -> __m512d;
        /// Stores eight f64 into `p[0..8]` (rounded to nearest f32 for f32).
        ///
        /// # Safety
        /// AVX-512 F; `p[0..8]` writable.
        unsafe fn store(p: *mut Self, v: __m512d);
        /// `v` rounded to `Self` and back: the values [`Eight::store`] stores.
        ///
        /// # Safety
        /// AVX-512 F.
        unsafe fn round(v: __m512d) -> __m512d;
    }

    impl Eight for f32 {
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512d {
            // SAFETY: the caller's contract.
            unsafe { _mm512_cvtps_pd(_mm256_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512d) {
            // SAFETY: the caller's contract.
            unsafe { _mm256_storeu_ps(p, _mm512_cvtpd_ps(v)) }
        }
        #[inline(always)]
        unsafe fn round(v: __m512d) -> __m512d {
            // SAFETY: the caller's contract (AVX-512 F).
            unsafe { _mm512_cvtps_pd(_mm512_cvtpd_ps(v)) }
        }
    }

    impl Eight for f64 {
        #[inline(always)]
        unsafe fn load(p: *const f64) -> __m512d {
            // SAFETY: the caller's contract.
            unsafe { _mm512_loadu_pd(p) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f64, v: __m512d) {
            // SAFETY: the caller's contract.
            unsafe { _mm512_storeu_pd(p, v) }
        }
        #[inline(always)]
        unsafe fn round(v: __m512d) -> __m512d {
            v
        }
    }

    #[inline(always)]
    fn lanes(acc: __m512d) -> [f64; 8] {
        let mut out = [0.0; 8];
        // SAFETY: `out` holds eight f64 (unaligned store).
        unsafe { _mm512_storeu_pd(out.as_mut_ptr(), acc) };
        out
    }

    /// See [`super::relu_output_lanes`]: `max(x − b, 0)` by `vmaxpd` with zero second, so a NaN
    /// gives 0, as `f64::max` does.
    ///
    /// # Safety
    /// The processor has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn relu_output<T: Eight>(h: &[T], c: &[f64], b: f64) -> [f64; 8] {
        let groups = h.len() / 8;
        assert!(c.len() >= groups * 8, "one coefficient per entry");
        let (vb, zero) = (_mm512_set1_pd(b), _mm512_setzero_pd());
        let mut acc = _mm512_setzero_pd();
        for k in 0..groups {
            // SAFETY: entries 8k..8k+8 of both slices are in bounds (asserted above).
            let (x, ck) = unsafe { (T::load(h.as_ptr().add(8 * k)), _mm512_loadu_pd(c.as_ptr().add(8 * k))) };
            acc = _mm512_add_pd(acc, _mm512_mul_pd(ck, _mm512_max_pd(_mm512_sub_pd(x, vb), zero)));
        }
        lanes(acc)
    }

    /// See [`super::relu_forward_lanes`]: `(max(x − b, 0), 1 or 0)` as the generic row's branch
    /// `x − b > 0` (ordered: a NaN gives `(0, 0)`).
    ///
    /// # Safety
    /// The processor has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn relu_forward<T: Eight>(h: &mut [T], a: &[f64], b: f64) -> [f64; 8] {
        let groups = h.len() / 8;
        assert!(a.len() >= groups * 8, "one weight per entry");
        let (vb, zero, one) = (_mm512_set1_pd(b), _mm512_setzero_pd(), _mm512_set1_pd(1.0));
        let mut acc = _mm512_setzero_pd();
        for k in 0..groups {
            // SAFETY: entries 8k..8k+8 of both slices are in bounds (asserted above).
            unsafe {
                let p = h.as_mut_ptr().add(8 * k);
                let y = _mm512_sub_pd(T::load(p), vb);
                let positive = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(y, zero);
                let v = _mm512_maskz_mov_pd(positive, y);
                acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_loadu_pd(a.as_ptr().add(8 * k)), v));
                T::store(p, _mm512_maskz_mov_pd(positive, one));
            }
        }
        lanes(acc)
    }

    /// See [`super::relu_apply_add`]: `max(x − b, 0)` as in `relu_output`, stored rounded to
    /// `T`, and that stored value times `y` added to `s` (a multiply, then an add).
    ///
    /// # Safety
    /// The processor has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn relu_apply_add<T: Eight>(h: &mut [T], b: f64, y: f64, s: &mut [f64]) -> usize {
        let groups = h.len() / 8;
        assert!(s.len() >= groups * 8, "one sum per entry");
        let (vb, zero, vy) = (_mm512_set1_pd(b), _mm512_setzero_pd(), _mm512_set1_pd(y));
        for k in 0..groups {
            // SAFETY: entries 8k..8k+8 of both slices are in bounds (asserted above).
            unsafe {
                let p = h.as_mut_ptr().add(8 * k);
                let v = T::round(_mm512_max_pd(_mm512_sub_pd(T::load(p), vb), zero));
                T::store(p, v);
                let q = s.as_mut_ptr().add(8 * k);
                _mm512_storeu_pd(q, _mm512_add_pd(_mm512_loadu_pd(q), _mm512_mul_pd(v, vy)));
            }
        }
        groups * 8
    }

    /// See [`super::scale_row`]: two multiplies in f64, in that order, then the store's rounding.
    ///
    /// # Safety
    /// The processor has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scale_row<T: Eight>(h: &mut [T], e: f64, a: &[f64]) -> usize {
        let groups = h.len() / 8;
        assert!(a.len() >= groups * 8, "one weight per entry");
        let ve = _mm512_set1_pd(e);
        for k in 0..groups {
            // SAFETY: entries 8k..8k+8 of both slices are in bounds (asserted above).
            unsafe {
                let p = h.as_mut_ptr().add(8 * k);
                let v = _mm512_mul_pd(_mm512_mul_pd(T::load(p), ve), _mm512_loadu_pd(a.as_ptr().add(8 * k)));
                T::store(p, v);
            }
        }
        groups * 8
    }
}
