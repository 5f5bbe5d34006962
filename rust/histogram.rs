//! Sparse histograms of the span store's rollups: merging the latency and time-to-first-token
//! histograms of many hourly or daily rollup rows into one, which is the hot part of answering a
//! dashboard query over a month of spans (tens of thousands of rows, a million bucket counts).
//!
//! A histogram is a blob of little-endian `i64` pairs `(bucket, count)`, sorted by bucket with
//! each bucket at most once; the Python layer writes and reads the same layout with
//! `array("q")`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Bytes of one `(bucket, count)` pair.
pub const PAIR_BYTES: usize = 16;

/// The `(bucket, count)` pairs of one blob, in the blob's order.
fn pairs(blob: &[u8]) -> Result<impl Iterator<Item = (i64, i64)> + '_> {
    if !blob.len().is_multiple_of(PAIR_BYTES) {
        return Err(Error::Histogram(format!(
            "a histogram blob holds {PAIR_BYTES}-byte pairs, got {} bytes",
            blob.len()
        )));
    }
    Ok(blob.chunks_exact(PAIR_BYTES).map(|pair| {
        let (bucket, count) = pair.split_at(8);
        (
            i64::from_le_bytes(bucket.try_into().unwrap_or([0; 8])),
            i64::from_le_bytes(count.try_into().unwrap_or([0; 8])),
        )
    }))
}

/// Widest bucket range summed in a dense array (8 MiB of counts); wider ones use a map. Real
/// histograms span a few thousand buckets (100 per factor e of nanoseconds).
const DENSE_MAX: i64 = 1 << 20;

/// The sum of `blobs` as one blob: each bucket's counts added (saturating), buckets whose sum
/// is zero dropped, sorted by bucket. An error names the first blob that is not whole pairs.
pub fn merge<'a>(blobs: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>> {
    let blobs: Vec<&[u8]> = blobs.into_iter().collect();
    let (mut low, mut high) = (i64::MAX, i64::MIN);
    for blob in &blobs {
        for (bucket, _) in pairs(blob)? {
            low = low.min(bucket);
            high = high.max(bucket);
        }
    }
    if low > high {
        return Ok(Vec::new());
    }
    let sums: Vec<(i64, i64)> = match high.checked_sub(low) {
        // Thousands of rows of the same few thousand buckets: an array, not a tree.
        Some(span) if span < DENSE_MAX => {
            let mut dense = vec![0i64; usize::try_from(span + 1).unwrap_or(0)];
            for blob in &blobs {
                for (bucket, count) in pairs(blob)? {
                    let slot = &mut dense[usize::try_from(bucket - low).unwrap_or(0)];
                    *slot = slot.saturating_add(count);
                }
            }
            (low..=high).zip(dense).collect()
        }
        _ => {
            let mut sparse: BTreeMap<i64, i64> = BTreeMap::new();
            for blob in &blobs {
                for (bucket, count) in pairs(blob)? {
                    let sum = sparse.entry(bucket).or_insert(0);
                    *sum = sum.saturating_add(count);
                }
            }
            sparse.into_iter().collect()
        }
    };
    let mut merged = Vec::new();
    for (bucket, count) in sums.into_iter().filter(|&(_, count)| count != 0) {
        merged.extend_from_slice(&bucket.to_le_bytes());
        merged.extend_from_slice(&count.to_le_bytes());
    }
    Ok(merged)
}

/// The log histogram of `values` as one blob: each value's bucket is
/// `trunc(ln(max(value, 1)) * buckets_per_e)`, as the store's SQL computes it (`ln` is the C
/// library's `log` in both, and SQLite's CAST truncates as `as` does), sorted by bucket.
pub fn log_histogram(values: &[i64], buckets_per_e: f64) -> Vec<u8> {
    let mut buckets: Vec<i64> = values
        .iter()
        .map(|&value| ((value.max(1) as f64).ln() * buckets_per_e) as i64)
        .collect();
    buckets.sort_unstable();
    let mut merged = Vec::new();
    let mut rest = buckets.as_slice();
    while let Some(&bucket) = rest.first() {
        let run = rest.iter().take_while(|&&other| other == bucket).count();
        merged.extend_from_slice(&bucket.to_le_bytes());
        merged.extend_from_slice(&i64::try_from(run).unwrap_or(i64::MAX).to_le_bytes());
        rest = &rest[run..];
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(pairs: &[(i64, i64)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|&(b, c)| b.to_le_bytes().into_iter().chain(c.to_le_bytes()))
            .collect()
    }

    #[test]
    fn adds_counts_per_bucket_in_bucket_order() {
        let a = blob(&[(3, 1), (7, 2)]);
        let b = blob(&[(-1, 4), (7, 5)]);
        let merged = merge([a.as_slice(), b.as_slice()]).unwrap();
        assert_eq!(merged, blob(&[(-1, 4), (3, 1), (7, 7)]));
    }

    #[test]
    fn nothing_merges_to_nothing() {
        assert_eq!(merge([]).unwrap(), Vec::<u8>::new());
        assert_eq!(merge([&[][..]]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn drops_zero_sums_and_saturates() {
        let a = blob(&[(1, 2), (2, i64::MAX)]);
        let b = blob(&[(1, -2), (2, 1)]);
        assert_eq!(
            merge([a.as_slice(), b.as_slice()]).unwrap(),
            blob(&[(2, i64::MAX)])
        );
    }

    #[test]
    fn far_apart_buckets_merge_as_close_ones_do() {
        let a = blob(&[(i64::MIN, 1), (0, 2), (i64::MAX, 3)]);
        let b = blob(&[(0, 1), (i64::MAX, -3)]);
        assert_eq!(
            merge([a.as_slice(), b.as_slice()]).unwrap(),
            blob(&[(i64::MIN, 1), (0, 3)])
        );
        let dense = blob(&[(-5, 1), (4000, 2)]);
        let more = blob(&[(4000, 1), (17, 1)]);
        assert_eq!(
            merge([dense.as_slice(), more.as_slice()]).unwrap(),
            blob(&[(-5, 1), (17, 1), (4000, 3)])
        );
    }

    #[test]
    fn log_buckets_are_the_stores() {
        // ln(1) = 0; ln(e^k) * 100 = 100 k; values under 1 count as 1.
        let values = [1, 0, -5, 3, 3, 1_000_000_000, i64::MAX];
        let expected = blob(&[(0, 3), (109, 2), (2072, 1), (4366, 1)]);
        assert_eq!(log_histogram(&values, 100.0), expected);
        assert_eq!(log_histogram(&[], 100.0), Vec::<u8>::new());
    }

    #[test]
    fn a_torn_blob_is_an_error() {
        let error = merge([&[0u8; 17][..]]).unwrap_err();
        assert!(error.to_string().contains("17 bytes"), "{error}");
    }
}
