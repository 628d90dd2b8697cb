//! ReLU's row kernels in AVX-512 ([`super::Activation::output_row`] and
//! [`super::Activation::forward_row`]): the compiler interleaves the eight lanes of the generic
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

/// The row's numbers as the kernels read them.
pub(super) enum Row<'a> {
    /// Single precision.
    F32(&'a [f32]),
    /// Double precision.
    F64(&'a [f64]),
}

/// A row the forward kernel rewrites.
pub(super) enum RowMut<'a> {
    /// Single precision.
    F32(&'a mut [f32]),
    /// Double precision.
    F64(&'a mut [f64]),
}

impl<'a> Row<'a> {
    /// `h` as f32 or f64 numbers (the two [`crate::linalg::Real`] types; `None` for any other).
    pub(super) fn of<T: 'static>(h: &'a [T]) -> Option<Row<'a>> {
        use std::any::TypeId;
        let (ptr, len) = (h.as_ptr(), h.len());
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: `T` is `f32` (same type id), so the slice is the same memory as `[f32]`.
            Some(Row::F32(unsafe { std::slice::from_raw_parts(ptr.cast::<f32>(), len) }))
        } else if TypeId::of::<T>() == TypeId::of::<f64>() {
            // SAFETY: as above, `T` is `f64`.
            Some(Row::F64(unsafe { std::slice::from_raw_parts(ptr.cast::<f64>(), len) }))
        } else {
            None
        }
    }
}

impl<'a> RowMut<'a> {
    /// `h` as f32 or f64 numbers (`None` for any other type).
    pub(super) fn of<T: 'static>(h: &'a mut [T]) -> Option<RowMut<'a>> {
        use std::any::TypeId;
        let (ptr, len) = (h.as_mut_ptr(), h.len());
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: `T` is `f32` (same type id); the borrow of `h` is moved into the result.
            Some(RowMut::F32(unsafe {
                std::slice::from_raw_parts_mut(ptr.cast::<f32>(), len)
            }))
        } else if TypeId::of::<T>() == TypeId::of::<f64>() {
            // SAFETY: as above, `T` is `f64`.
            Some(RowMut::F64(unsafe {
                std::slice::from_raw_parts_mut(ptr.cast::<f64>(), len)
            }))
        } else {
            None
        }
    }
}

/// The eight lanes of `Σ c_i max(h_i − b, 0)` over the whole groups of eight of `h` (the
/// remainder is the caller's), or `None` where the kernels cannot run.
pub(super) fn relu_output_lanes(h: Row<'_>, c: &[f64], b: f64) -> Option<[f64; 8]> {
    if !usable() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AVX-512 F was detected (`usable`); the kernels check the lengths.
        unsafe {
            Some(match h {
                Row::F32(h) => x86::relu_output_f32(h, c, b),
                Row::F64(h) => x86::relu_output_f64(h, c, b),
            })
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The eight lanes of `Σ a_i max(h_i − b, 0)` over the whole groups of eight of `h`, each
/// `h_i` of them replaced by `σ'(h_i)` (1 where `h_i − b > 0`, else 0), or `None` (nothing
/// written) where the kernels cannot run.
pub(super) fn relu_forward_lanes(h: RowMut<'_>, a: &[f64], b: f64) -> Option<[f64; 8]> {
    if !usable() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AVX-512 F was detected (`usable`); the kernels check the lengths.
        unsafe {
            Some(match h {
                RowMut::F32(h) => x86::relu_forward_f32(h, a, b),
                RowMut::F64(h) => x86::relu_forward_f64(h, a, b),
            })
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline(always)]
    fn lanes(acc: __m512d) -> [f64; 8] {
        let mut out = [0.0; 8];
        // SAFETY: `out` holds eight f64 (unaligned store).
        unsafe { _mm512_storeu_pd(out.as_mut_ptr(), acc) };
        out
    }

    /// `max(x − b, 0)` by `vmaxpd` with zero second: a NaN gives 0, as `f64::max` does.
    #[inline(always)]
    fn relu(x: __m512d, b: __m512d) -> __m512d {
        // SAFETY: called only from the kernels below, which run with AVX-512 F.
        unsafe { _mm512_max_pd(_mm512_sub_pd(x, b), _mm512_setzero_pd()) }
    }

    /// See [`super::relu_output_lanes`].
    ///
    /// # Safety
    /// The processor has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn relu_output_f32(h: &[f32], c: &[f64], b: f64) -> [f64; 8] {
        let groups = h.len() / 8;
        assert!(c.len() >= groups * 8, "one coefficient per entry");
        let vb = _mm512_set1_pd(b);
        let mut acc = _mm512_setzero_pd();
        for k in 0..groups {
            // SAFETY: entries 8k..8k+8 of both slices are in bounds (asserted above).
            let (x, ck) = unsafe {
                (
                    _mm512_cvtps_pd(_mm256_loadu_ps(h.as_ptr().add(8 * k))),
                    _mm512_loadu_pd(c.as_ptr().add(8 * k)),
                )
            };
            acc = _mm512_add_pd(acc, _mm512_mul_pd(ck, relu(x, vb)));
        }
        lanes(acc)
    }

    /// See [`super::relu_output_lanes`].
    ///
    /// # Safety
    /// The processor has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn relu_output_f64(h: &[f64], c: &[f64], b: f64) -> [f64; 8] {
        let groups = h.len() / 8;
        assert!(c.len() >= groups * 8, "one coefficient per entry");
        let vb = _mm512_set1_pd(b);
        let mut acc = _mm512_setzero_pd();
        for k in 0..groups {
            // SAFETY: entries 8k..8k+8 of both slices are in bounds (asserted above).
            let (x, ck) = unsafe {
                (
                    _mm512_loadu_pd(h.as_ptr().add(8 * k)),
                    _mm512_loadu_pd(c.as_ptr().add(8 * k)),
                )
            };
            acc = _mm512_add_pd(acc, _mm512_mul_pd(ck, relu(x, vb)));
        }
        lanes(acc)
    }

    /// `(max(x − b, 0), 1 or 0)` as the generic row's branch `x − b > 0` (ordered: a NaN gives
    /// `(0, 0)`).
    #[inline(always)]
    fn relu_and_slope(x: __m512d, b: __m512d) -> (__m512d, __m512d) {
        // SAFETY: called only from the kernels below, which run with AVX-512 F.
        unsafe {
            let y = _mm512_sub_pd(x, b);
            let positive = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(y, _mm512_setzero_pd());
            (
                _mm512_maskz_mov_pd(positive, y),
                _mm512_maskz_mov_pd(positive, _mm512_set1_pd(1.0)),
            )
        }
    }

    /// See [`super::relu_forward_lanes`].
    ///
    /// # Safety
    /// The processor has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn relu_forward_f32(h: &mut [f32], a: &[f64], b: f64) -> [f64; 8] {
        let groups = h.len() / 8;
        assert!(a.len() >= groups * 8, "one weight per entry");
        let vb = _mm512_set1_pd(b);
        let mut acc = _mm512_setzero_pd();
        for k in 0..groups {
            // SAFETY: entries 8k..8k+8 of both slices are in bounds (asserted above).
            unsafe {
                let p = h.as_mut_ptr().add(8 * k);
                let (v, dv) = relu_and_slope(_mm512_cvtps_pd(_mm256_loadu_ps(p)), vb);
                acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_loadu_pd(a.as_ptr().add(8 * k)), v));
                // 0 and 1 are exact in f32.
                _mm256_storeu_ps(p, _mm512_cvtpd_ps(dv));
            }
        }
        lanes(acc)
    }

    /// See [`super::relu_forward_lanes`].
    ///
    /// # Safety
    /// The processor has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn relu_forward_f64(h: &mut [f64], a: &[f64], b: f64) -> [f64; 8] {
        let groups = h.len() / 8;
        assert!(a.len() >= groups * 8, "one weight per entry");
        let vb = _mm512_set1_pd(b);
        let mut acc = _mm512_setzero_pd();
        for k in 0..groups {
            // SAFETY: entries 8k..8k+8 of both slices are in bounds (asserted above).
            unsafe {
                let p = h.as_mut_ptr().add(8 * k);
                let (v, dv) = relu_and_slope(_mm512_loadu_pd(p), vb);
                acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_loadu_pd(a.as_ptr().add(8 * k)), v));
                _mm512_storeu_pd(p, dv);
            }
        }
        lanes(acc)
    }
}
