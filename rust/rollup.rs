//! The sum of many rollup rows of one group (a model, a service, a time bucket): what the
//! dashboard adds up for a month of text rollups (tens of thousands of rows). Counts and sums
//! are added here in one pass, the histograms merged by `histogram::merge`; the Python layer
//! did this column by column, which cost more than reading the rows.

/// One rollup row's values (`span_rollups`' value columns; the histograms travel apart).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupRow {
    pub spans: i64,
    /// The row's status is `error`: all its spans are errors.
    pub is_error: bool,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub min_duration_ns: i64,
    pub max_duration_ns: i64,
    /// `None` when none of the row's spans was streamed.
    pub min_ttft_ns: Option<i64>,
    pub max_ttft_ns: Option<i64>,
}

/// The sum of rollup rows. Sums are SQL's: `None` only when every part is `None`; token sums
/// are 128-bit, so no realistic sum overflows; cost is added in row order (as Python's `sum`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RollupSum {
    pub spans: i128,
    pub errors: i128,
    pub prompt_tokens: Option<i128>,
    pub completion_tokens: Option<i128>,
    pub cost_usd: Option<f64>,
    /// `None` before the first row.
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    pub min_ttft_ns: Option<i64>,
    pub max_ttft_ns: Option<i64>,
}

fn add<T: std::ops::Add<Output = T>>(sum: Option<T>, part: Option<T>) -> Option<T> {
    match (sum, part) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

fn lowest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn highest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl RollupSum {
    /// Add one row.
    pub fn add(&mut self, row: &RollupRow) {
        self.spans += i128::from(row.spans);
        if row.is_error {
            self.errors += i128::from(row.spans);
        }
        self.prompt_tokens = add(self.prompt_tokens, row.prompt_tokens.map(i128::from));
        self.completion_tokens = add(self.completion_tokens, row.completion_tokens.map(i128::from));
        self.cost_usd = add(self.cost_usd, row.cost_usd);
        self.min_duration_ns = lowest(self.min_duration_ns, Some(row.min_duration_ns));
        self.max_duration_ns = highest(self.max_duration_ns, Some(row.max_duration_ns));
        self.min_ttft_ns = lowest(self.min_ttft_ns, row.min_ttft_ns);
        self.max_ttft_ns = highest(self.max_ttft_ns, row.max_ttft_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(spans: i64, is_error: bool, cost: Option<f64>, ttft: Option<i64>) -> RollupRow {
        RollupRow {
            spans,
            is_error,
            prompt_tokens: cost.map(|_| 10),
            completion_tokens: None,
            cost_usd: cost,
            min_duration_ns: spans * 100,
            max_duration_ns: spans * 1000,
            min_ttft_ns: ttft,
            max_ttft_ns: ttft.map(|t| t * 2),
        }
    }

    #[test]
    fn sums_counts_and_errors_and_keeps_the_extremes() {
        let mut sum = RollupSum::default();
        for r in [
            row(3, false, Some(0.5), None),
            row(2, true, None, Some(7)),
            row(5, false, Some(0.25), Some(4)),
        ] {
            sum.add(&r);
        }
        assert_eq!(sum.spans, 10);
        assert_eq!(sum.errors, 2);
        assert_eq!(sum.prompt_tokens, Some(20));
        assert_eq!(sum.completion_tokens, None);
        assert_eq!(sum.cost_usd, Some(0.75));
        assert_eq!((sum.min_duration_ns, sum.max_duration_ns), (Some(200), Some(5000)));
        assert_eq!((sum.min_ttft_ns, sum.max_ttft_ns), (Some(4), Some(14)));
    }

    #[test]
    fn nothing_priced_or_streamed_stays_none() {
        let mut sum = RollupSum::default();
        sum.add(&row(1, false, None, None));
        assert_eq!((sum.cost_usd, sum.prompt_tokens, sum.min_ttft_ns), (None, None, None));
    }

    #[test]
    fn token_sums_past_i64_do_not_overflow() {
        let mut sum = RollupSum::default();
        let mut big = row(i64::MAX, true, Some(1.0), None);
        big.prompt_tokens = Some(i64::MAX);
        sum.add(&big);
        sum.add(&big);
        assert_eq!(sum.prompt_tokens, Some(2 * i128::from(i64::MAX)));
        assert_eq!(sum.errors, 2 * i128::from(i64::MAX));
    }
}
