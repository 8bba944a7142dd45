//! temporary stub
#![allow(missing_docs)]
use crate::metric::Member;
#[derive(Debug, Clone)]
pub struct Histogram {
    v: heapless::Vec<f64, 256>,
    n: u64,
    sum: f64,
}
impl Histogram {
    pub const fn new() -> Self {
        Histogram {
            v: heapless::Vec::new(),
            n: 0,
            sum: 0.0,
        }
    }
    pub fn insert(&mut self, x: f64) -> Result<(), ()> {
        let _ = self.v.push(x);
        self.n += 1;
        self.sum += x;
        Ok(())
    }
    pub fn count(&self) -> u64 {
        self.n
    }
    pub fn sum(&self) -> f64 {
        self.sum
    }
    pub fn min(&self) -> Option<f64> {
        self.v.iter().copied().reduce(f64::min)
    }
    pub fn max(&self) -> Option<f64> {
        self.v.iter().copied().reduce(f64::max)
    }
    pub fn quantile(&self, p: f64) -> Option<f64> {
        let mut s = self.v.clone();
        s.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap());
        Some(crate::wrap::interpolate_sorted(&s, p))
    }
}
#[derive(Debug, Clone)]
pub struct SetCounter {
    h: heapless::Vec<u64, 512>,
}
impl SetCounter {
    pub const fn new() -> Self {
        SetCounter {
            h: heapless::Vec::new(),
        }
    }
    pub fn insert_hash(&mut self, x: u64) {
        if !self.h.contains(&x) {
            let _ = self.h.push(x);
        }
    }
    pub fn insert(&mut self, m: Member<'_>) {
        self.insert_hash(hash_member(m))
    }
    pub fn estimate(&self) -> u64 {
        self.h.len() as u64
    }
}
pub fn hash_member(m: Member<'_>) -> u64 {
    match m {
        Member::Str(s) => crate::hash::hash_bytes(1, s.as_bytes()),
        Member::Num(x) => crate::hash::hash_u64(2, if x == 0.0 { 0 } else { x.to_bits() }),
    }
}
