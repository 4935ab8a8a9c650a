//! Attention heads in and out: `(B, T, 3C)` projections split into `(B, nh, T, hs)` q, k and v,
//! and `(B, nh, T, hs)` outputs merged back into `(B, T, C)`, forward and backward.
//!
//! Composed from candle ops, the split is `narrow → reshape → transpose → contiguous` and the merge
//! `transpose → reshape`. Their backward passes copy strided gradients into contiguous ones and
//! pad each third of the projection's gradient with zeros through `cat`, all on the step's own
//! thread. Here each direction is one row-parallel copy. Only values move, so the bits are the
//! composed ops' bits, gradients included (the zero padding is the same `+0`).

use super::slices::{f32_slice, par_rows_uninit, with_f32};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use std::mem::MaybeUninit;

/// Returns part `which` (0 = q, 1 = k, 2 = v) of `qkv` `(B, T, 3C)` as `(B, nh, T, C / nh)`.
///
/// f32 runs the kernel; other dtypes take the composed candle ops (the same values).
///
/// # Errors
/// Candle errors on a shape that is not `(B, T, 3·nh·hs)`.
pub fn split_heads(qkv: &Tensor, n_head: usize, which: usize) -> Result<Tensor> {
    let (b, t, c3) = qkv.dims3()?;
    let c = c3 / 3;
    if qkv.dtype() != DType::F32 {
        return Ok(qkv
            .narrow(2, which * c, c)?
            .reshape((b, t, n_head, c / n_head))?
            .transpose(1, 2)?
            .contiguous()?);
    }
    let op = Heads {
        b,
        t,
        nh: n_head,
        hs: c / n_head,
        change: Change::Split(which),
    };
    Ok(qkv.contiguous()?.apply_op1(op)?)
}

/// Returns all three parts of f32 `qkv` `(B, T, 3C)` as one `(3, B, nh, T, C / nh)` tensor, q, k
/// and v stacked: for an op that takes them together, so that their gradient comes back as one
/// tensor and is copied into the projections' gradient in one pass.
///
/// Three [`split_heads`] would each pad their part's gradient with zeros to `3C` columns, and
/// autograd would add the three up: `+0` added to every element. The backward here adds the same
/// `+0`, which turns a gradient's `−0` into `+0`, so the bits are those of the three splits.
///
/// # Errors
/// Candle errors on a shape that is not `(B, T, 3·n_head·hs)` or a dtype other than f32.
pub fn split_qkv_heads(qkv: &Tensor, n_head: usize) -> Result<Tensor> {
    let (b, t, c3) = qkv.dims3()?;
    if n_head == 0 || c3 % (3 * n_head) != 0 {
        let msg = format!("split_qkv_heads: width {c3} is not 3 × {n_head} heads");
        return Err(candle_core::Error::Msg(msg).into());
    }
    let op = Heads {
        b,
        t,
        nh: n_head,
        hs: c3 / 3 / n_head,
        change: Change::SplitAll,
    };
    Ok(qkv.contiguous()?.apply_op1(op)?)
}

/// Returns attention's output `y` `(B, nh, T, hs)` as `(B, T, nh·hs)`, heads side by side.
///
/// f32 runs the kernel; other dtypes take the composed candle ops (the same values).
///
/// # Errors
/// Candle errors on a shape that is not four-dimensional.
pub fn merge_heads(y: &Tensor) -> Result<Tensor> {
    let (b, nh, t, hs) = y.dims4()?;
    if y.dtype() != DType::F32 {
        return Ok(y.transpose(1, 2)?.reshape((b, t, nh * hs))?);
    }
    let op = Heads {
        b,
        t,
        nh,
        hs,
        change: Change::Merge,
    };
    Ok(y.contiguous()?.apply_op1(op)?)
}

/// One head layout change. Each one's backward is the other direction.
#[derive(Clone, Copy)]
enum Change {
    /// Part `part` of `(B, T, 3C)` to `(B, nh, T, hs)`.
    Split(usize),
    /// All three parts of `(B, T, 3C)` to `(3, B, nh, T, hs)`.
    SplitAll,
    /// `(B, nh, T, hs)` into `(B, T, C)`.
    Merge,
}

#[derive(Clone, Copy)]
struct Heads {
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
    change: Change,
}

impl Heads {
    /// `(parts, B, nh, T, hs)` from a `(B, T, width)` tensor whose heads start at column `offset`,
    /// the parts side by side from there.
    fn gather_heads(&self, src: &[f32], width: usize, offset: usize, parts: usize) -> Vec<f32> {
        let (b, t, nh, hs) = (self.b, self.t, self.nh, self.hs);
        // A row is one (part, batch, head): T vectors of hs, one from each token.
        // SAFETY: a row is t chunks of exactly hs elements, each written by its copy.
        unsafe {
            par_rows_uninit(
                parts * b * nh * t * hs,
                t * hs,
                #[inline(always)]
                |r, out| {
                    let (part, bi, h) = (r / (b * nh), r / nh % b, r % nh);
                    for (ti, o) in out.chunks_exact_mut(hs).enumerate() {
                        let at = (bi * t + ti) * width + offset + (part * nh + h) * hs;
                        for (o, &x) in o.iter_mut().zip(&src[at..at + hs]) {
                            o.write(x);
                        }
                    }
                },
            )
        }
    }

    /// `(B, T, width)` from `(parts, B, nh, T, hs)`, heads written from column `offset`, the
    /// parts side by side; zeros elsewhere. `PLUS_ZERO` adds `+0` to every value copied.
    fn scatter_heads<const PLUS_ZERO: bool>(
        &self,
        src: &[f32],
        width: usize,
        offset: usize,
        parts: usize,
    ) -> Vec<f32> {
        let (b, t, nh, hs) = (self.b, self.t, self.nh, self.hs);
        // A row is one (batch, token): its parts' nh head vectors side by side.
        // SAFETY: a row is `width` elements: zeros before `offset` and from
        // `offset + parts · nh · hs` on, and parts · nh chunks of exactly hs between, each written
        // by its copy.
        unsafe {
            par_rows_uninit(
                b * t * width,
                width,
                #[inline(always)]
                |r, out| {
                    let (bi, ti) = (r / t, r % t);
                    let (before, rest) = out.split_at_mut(offset);
                    let (heads, after) = rest.split_at_mut(parts * nh * hs);
                    before.fill(MaybeUninit::new(0.0));
                    after.fill(MaybeUninit::new(0.0));
                    for (ph, o) in heads.chunks_exact_mut(hs).enumerate() {
                        let (part, h) = (ph / nh, ph % nh);
                        let at = (((part * b + bi) * nh + h) * t + ti) * hs;
                        for (o, &x) in o.iter_mut().zip(&src[at..at + hs]) {
                            o.write(if PLUS_ZERO { x + 0.0 } else { x });
                        }
                    }
                },
            )
        }
    }

    fn c(&self) -> usize {
        self.nh * self.hs
    }
}

impl CustomOp1 for Heads {
    fn name(&self) -> &'static str {
        match self.change {
            Change::Split(_) => "lossdiff-split-heads",
            Change::SplitAll => "lossdiff-split-qkv-heads",
            Change::Merge => "lossdiff-merge-heads",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = f32_slice(s, l)?;
        let (b, t, nh, hs, c) = (self.b, self.t, self.nh, self.hs, self.c());
        let (out, shape): (Vec<f32>, Shape) = match self.change {
            Change::Split(part) => (
                self.gather_heads(src, 3 * c, part * c, 1),
                (b, nh, t, hs).into(),
            ),
            Change::SplitAll => (
                self.gather_heads(src, 3 * c, 0, 3),
                (3, b, nh, t, hs).into(),
            ),
            Change::Merge => (self.scatter_heads::<false>(src, c, 0, 1), (b, t, c).into()),
        };
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let c = self.c();
        let dx = with_f32(grad, |g| {
            Ok(match self.change {
                Change::Split(part) => self.scatter_heads::<false>(g, 3 * c, part * c, 1),
                Change::SplitAll => self.scatter_heads::<true>(g, 3 * c, 0, 3),
                Change::Merge => self.gather_heads(g, c, 0, 1),
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_support::{probed_grads, seeded};
    use candle_core::{Device, Var};

    fn bits(t: &Tensor) -> Vec<u32> {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The composed ops the model used before these kernels.
    fn composed_split(qkv: &Tensor, nh: usize, part: usize) -> Tensor {
        let (b, t, c3) = qkv.dims3().unwrap();
        let c = c3 / 3;
        qkv.narrow(2, part * c, c)
            .unwrap()
            .reshape((b, t, nh, c / nh))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
    }

    #[test]
    fn split_then_merge_gives_the_composed_ops_bits_forward_and_backward() {
        let dev = Device::Cpu;
        let (b, t, nh, hs) = (3, 37, 4, 8); // 37 tokens: ragged rayon tasks
        let c = nh * hs;
        let qkv = Var::from_vec(seeded(b * t * 3 * c, 1), (b, t, 3 * c), &dev).unwrap();
        let probe = Tensor::from_vec(seeded(b * t * c, 2), (b, t, c), &dev).unwrap();
        // An output depending on all three parts, unevenly, so each part's gradient differs.
        let run = |split: &dyn Fn(usize) -> Tensor, merge: &dyn Fn(&Tensor) -> Tensor| {
            let (q, k, v) = (split(0), split(1), split(2));
            let y = ((q * 2.0).unwrap() + (k * v).unwrap()).unwrap();
            merge(&y)
        };
        let fused = run(&|p| split_heads(qkv.as_tensor(), nh, p).unwrap(), &|y| {
            merge_heads(y).unwrap()
        });
        let composed = run(&|p| composed_split(qkv.as_tensor(), nh, p), &|y| {
            y.transpose(1, 2).unwrap().reshape((b, t, c)).unwrap()
        });
        assert_eq!(fused.dims(), &[b, t, c]);
        assert_eq!(bits(&fused), bits(&composed), "forward");
        let (gf, gc) = (probed_grads(fused, &probe), probed_grads(composed, &probe));
        assert_eq!(
            bits(gf.get(&qkv).unwrap()),
            bits(gc.get(&qkv).unwrap()),
            "gradient of qkv"
        );
    }

    #[test]
    fn one_split_of_all_three_parts_gives_three_splits_bits_forward_and_backward() {
        let dev = Device::Cpu;
        let (b, t, nh, hs) = (2, 37, 4, 8);
        let c = nh * hs;
        let qkv = Var::from_vec(seeded(b * t * 3 * c, 1), (b, t, 3 * c), &dev).unwrap();
        // Negative zeros in the probe make some gradients −0: three splits' padded sum turns
        // them into +0, and so must the one split.
        let mut p = seeded(3 * b * nh * t * hs, 2);
        p.iter_mut().step_by(5).for_each(|x| *x = -0.0);
        let probe = Tensor::from_vec(p, (3, b, nh, t, hs), &dev).unwrap();
        let x = qkv.as_tensor();
        let all = split_qkv_heads(x, nh).unwrap();
        let three = Tensor::stack(&[0, 1, 2].map(|i| split_heads(x, nh, i).unwrap()), 0).unwrap();
        assert_eq!(all.dims(), &[3, b, nh, t, hs]);
        assert_eq!(bits(&all), bits(&three), "forward");
        let (ga, gt) = (probed_grads(all, &probe), probed_grads(three, &probe));
        let (ga, gt) = (bits(ga.get(&qkv).unwrap()), bits(gt.get(&qkv).unwrap()));
        assert!(gt.contains(&0), "the probe makes some gradients zero");
        assert_eq!(ga, gt, "gradient of qkv");
    }

    #[test]
    fn a_width_that_is_not_three_parts_of_whole_heads_is_an_error_not_a_panic() {
        let qkv = Tensor::zeros((1, 2, 10), candle_core::DType::F32, &Device::Cpu).unwrap();
        for n_head in [0, 2] {
            let err = split_qkv_heads(&qkv, n_head).unwrap_err().to_string();
            assert!(err.contains("width 10"), "{err}");
        }
    }

    #[test]
    fn each_head_takes_its_own_columns_of_its_part() {
        let dev = Device::Cpu;
        let (b, t, nh, hs) = (2, 3, 2, 2);
        let c = nh * hs;
        // Value = its flat index: (batch, token, column) is readable from the number.
        let data: Vec<f32> = (0..b * t * 3 * c).map(|i| i as f32).collect();
        let qkv = Tensor::from_vec(data, (b, t, 3 * c), &dev).unwrap();
        let k = split_heads(&qkv, nh, 1).unwrap();
        assert_eq!(k.dims(), &[b, nh, t, hs]);
        // Batch 1, head 1, token 2: row (1·3 + 2)·12, part k from column 4, head 1 from 4 + 2.
        let got = k.get(1).unwrap().get(1).unwrap().get(2).unwrap();
        assert_eq!(got.to_vec1::<f32>().unwrap(), vec![66.0, 67.0]);
    }
}
