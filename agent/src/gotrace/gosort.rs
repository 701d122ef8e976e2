//! Go's `slices.SortFunc` (pattern-defeating quicksort), ported from Go 1.27.3's
//! `src/slices/zsortanyfunc.go` and `sort.go`.
//!
//! Go's trace reader sorts its frontier of batch cursors with `slices.SortFunc` when the cursor
//! with the earliest event cannot advance, then tries the others in that order
//! (internal/trace/reader.go: ReadEvent). The sort is not stable, so cursors whose events have
//! equal timestamps end up in an order only this exact algorithm reproduces; using it keeps our
//! event order identical to Go's.

use std::cmp::Ordering;

/// slices.SortFunc: sorts `data` by `cmp`, exactly as Go orders elements (including equal ones).
pub fn sort_func<T>(data: &mut [T], cmp: impl Fn(&T, &T) -> Ordering) {
    let n = data.len();
    // bits.Len(uint(n)).
    let limit = (usize::BITS - n.leading_zeros()) as usize;
    let less = |data: &[T], i: usize, j: usize| cmp(&data[i], &data[j]) == Ordering::Less;
    pdqsort(data, 0, n, limit, &less);
}

/// sortedHint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SortedHint {
    Unknown,
    Increasing,
    Decreasing,
}

/// insertionSortCmpFunc: sorts data[a..b] using insertion sort.
fn insertion_sort<T>(
    data: &mut [T],
    a: usize,
    b: usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && less(data, j, j - 1) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// siftDownCmpFunc: implements the heap property on data[lo..hi].
fn sift_down<T>(
    data: &mut [T],
    lo: usize,
    hi: usize,
    first: usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) {
    let mut root = lo;
    loop {
        let mut child = 2 * root + 1;
        if child >= hi {
            break;
        }
        if child + 1 < hi && less(data, first + child, first + child + 1) {
            child += 1;
        }
        if !less(data, first + root, first + child) {
            return;
        }
        data.swap(first + root, first + child);
        root = child;
    }
}

/// heapSortCmpFunc.
fn heap_sort<T>(data: &mut [T], a: usize, b: usize, less: &impl Fn(&[T], usize, usize) -> bool) {
    let first = a;
    let lo = 0;
    let hi = b - a;
    // Build heap with greatest element at top.
    let mut i = (hi as isize - 1) / 2;
    while i >= 0 {
        sift_down(data, i as usize, hi, first, less);
        i -= 1;
    }
    // Pop elements, largest first, into end of data.
    let mut i = hi as isize - 1;
    while i >= 0 {
        data.swap(first, first + i as usize);
        sift_down(data, lo, i as usize, first, less);
        i -= 1;
    }
}

/// pdqsortCmpFunc: sorts data[a..b].
fn pdqsort<T>(
    data: &mut [T],
    mut a: usize,
    mut b: usize,
    mut limit: usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) {
    const MAX_INSERTION: usize = 12;
    let mut was_balanced = true; // whether the last partitioning was reasonably balanced
    let mut was_partitioned = true; // whether the slice was already partitioned
    loop {
        let length = b - a;
        if length <= MAX_INSERTION {
            insertion_sort(data, a, b, less);
            return;
        }
        // Fall back to heapsort if too many bad choices were made.
        if limit == 0 {
            heap_sort(data, a, b, less);
            return;
        }
        // If the last partitioning was imbalanced, we need to break patterns.
        if !was_balanced {
            break_patterns(data, a, b);
            limit -= 1;
        }
        let (mut pivot, mut hint) = choose_pivot(data, a, b, less);
        if hint == SortedHint::Decreasing {
            reverse_range(data, a, b);
            // The chosen pivot was pivot-a elements after the start of the array. After
            // reversing it is pivot-a elements before the end of the array.
            pivot = (b - 1) - (pivot - a);
            hint = SortedHint::Increasing;
        }
        // The slice is likely already sorted.
        if was_balanced
            && was_partitioned
            && hint == SortedHint::Increasing
            && partial_insertion_sort(data, a, b, less)
        {
            return;
        }
        // Probably the slice contains many duplicate elements, partition the slice into
        // elements equal to and elements greater than the pivot.
        if a > 0 && !less(data, a - 1, pivot) {
            a = partition_equal(data, a, b, pivot, less);
            continue;
        }
        let (mid, already_partitioned) = partition(data, a, b, pivot, less);
        was_partitioned = already_partitioned;
        let (left_len, right_len) = (mid - a, b - mid);
        let balance_threshold = length / 8;
        if left_len < right_len {
            was_balanced = left_len >= balance_threshold;
            pdqsort(data, a, mid, limit, less);
            a = mid + 1;
        } else {
            was_balanced = right_len >= balance_threshold;
            pdqsort(data, mid + 1, b, limit, less);
            b = mid;
        }
    }
}

/// partitionCmpFunc: one quicksort partition.
fn partition<T>(
    data: &mut [T],
    a: usize,
    b: usize,
    pivot: usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) -> (usize, bool) {
    data.swap(a, pivot);
    // i and j are inclusive of the elements remaining to be partitioned (j may go below a+1,
    // down to a, hence isize).
    let (mut i, mut j) = (a as isize + 1, b as isize - 1);
    // Elements less than data[a] go left.
    let left = |data: &[T], x: usize| less(data, x, a);
    // Go writes the first round out: if i and j cross in it, data was already partitioned.
    if !partition_round(data, &mut i, &mut j, left) {
        data.swap(j as usize, a);
        return (j as usize, true);
    }
    while partition_round(data, &mut i, &mut j, left) {}
    data.swap(j as usize, a);
    (j as usize, false)
}

/// partitionEqualCmpFunc: partitions data[a..b] into elements equal to data[pivot] followed
/// by elements greater than data[pivot]. Assumes data[a..b] has no element smaller.
fn partition_equal<T>(
    data: &mut [T],
    a: usize,
    b: usize,
    pivot: usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) -> usize {
    data.swap(a, pivot);
    let (mut i, mut j) = (a as isize + 1, b as isize - 1);
    // Elements not greater than data[a] (equal to it) go left.
    while partition_round(data, &mut i, &mut j, |data: &[T], x| !less(data, a, x)) {}
    i as usize
}

/// One round of the partition loops of partitionCmpFunc and partitionEqualCmpFunc (Go writes
/// it out in each): moves i right past the elements that go left (`left`), j left past those
/// that do not, then swaps the two misplaced elements found and steps past them. False, with
/// nothing swapped, once i and j have crossed.
fn partition_round<T>(
    data: &mut [T],
    i: &mut isize,
    j: &mut isize,
    left: impl Fn(&[T], usize) -> bool,
) -> bool {
    while *i <= *j && left(data, *i as usize) {
        *i += 1;
    }
    while *i <= *j && !left(data, *j as usize) {
        *j -= 1;
    }
    if *i > *j {
        return false;
    }
    data.swap(*i as usize, *j as usize);
    *i += 1;
    *j -= 1;
    true
}

/// partialInsertionSortCmpFunc: partially sorts a slice, returns true if the slice is sorted
/// at the end.
fn partial_insertion_sort<T>(
    data: &mut [T],
    a: usize,
    b: usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) -> bool {
    const MAX_STEPS: usize = 5; // maximum number of adjacent out-of-order pairs that will get shifted
    const SHORTEST_SHIFTING: usize = 50; // don't shift any elements on short arrays
    let mut i = a + 1;
    for _ in 0..MAX_STEPS {
        while i < b && !less(data, i, i - 1) {
            i += 1;
        }
        if i == b {
            return true;
        }
        if b - a < SHORTEST_SHIFTING {
            return false;
        }
        data.swap(i, i - 1);
        // Shift the smaller one to the left. (Go's loop runs down to index 1, not a+1.)
        if i - a >= 2 {
            let mut j = i - 1;
            while j >= 1 {
                if !less(data, j, j - 1) {
                    break;
                }
                data.swap(j, j - 1);
                j -= 1;
            }
        }
        // Shift the greater one to the right.
        if b - i >= 2 {
            for j in i + 1..b {
                if !less(data, j, j - 1) {
                    break;
                }
                data.swap(j, j - 1);
            }
        }
    }
    false
}

/// breakPatternsCmpFunc: scatters some elements around in an attempt to break some patterns
/// that might cause imbalanced partitions in quicksort.
fn break_patterns<T>(data: &mut [T], a: usize, b: usize) {
    let length = b - a;
    if length >= 8 {
        // xorshift seeded with the length; nextPowerOfTwo = 1 << bits.Len(length).
        let mut random = length as u64;
        let modulus = 1usize << (usize::BITS - length.leading_zeros());
        let mut idx = a + (length / 4) * 2 - 1;
        while idx <= a + (length / 4) * 2 + 1 {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let mut other = (random as usize) & (modulus - 1);
            if other >= length {
                other -= length;
            }
            data.swap(idx, a + other);
            idx += 1;
        }
    }
}

/// choosePivotCmpFunc: chooses a pivot in data[a..b].
fn choose_pivot<T>(
    data: &mut [T],
    a: usize,
    b: usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) -> (usize, SortedHint) {
    const SHORTEST_NINTHER: usize = 50;
    const MAX_SWAPS: usize = 4 * 3;
    let l = b - a;
    let mut swaps = 0;
    let mut i = a + l / 4;
    let mut j = a + l / 4 * 2;
    let mut k = a + l / 4 * 3;
    if l >= 8 {
        if l >= SHORTEST_NINTHER {
            // Tukey ninther method.
            i = median(data, i - 1, i, i + 1, &mut swaps, less);
            j = median(data, j - 1, j, j + 1, &mut swaps, less);
            k = median(data, k - 1, k, k + 1, &mut swaps, less);
        }
        // Find the median among i, j, k and store it into j.
        j = median(data, i, j, k, &mut swaps, less);
    }
    match swaps {
        0 => (j, SortedHint::Increasing),
        MAX_SWAPS => (j, SortedHint::Decreasing),
        _ => (j, SortedHint::Unknown),
    }
}

/// order2CmpFunc: returns x, y where data[x] <= data[y], where x, y = a, b or b, a.
fn order2<T>(
    data: &[T],
    a: usize,
    b: usize,
    swaps: &mut usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) -> (usize, usize) {
    if less(data, b, a) {
        *swaps += 1;
        return (b, a);
    }
    (a, b)
}

/// medianCmpFunc: returns x where data[x] is the median of data[a], data[b], data[c].
fn median<T>(
    data: &[T],
    a: usize,
    b: usize,
    c: usize,
    swaps: &mut usize,
    less: &impl Fn(&[T], usize, usize) -> bool,
) -> usize {
    let (a, b) = order2(data, a, b, swaps, less);
    let (b, c) = order2(data, b, c, swaps, less);
    let _ = c;
    let (_a, b) = order2(data, a, b, swaps, less);
    b
}

/// reverseRangeCmpFunc.
fn reverse_range<T>(data: &mut [T], a: usize, b: usize) {
    data[a..b].reverse();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sorting (key, original index) pairs by key only: the result must be sorted, a
    /// permutation, and, for Go's algorithm, deterministic.
    #[test]
    fn sorts_like_a_sort() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in [0usize, 1, 2, 5, 12, 13, 20, 49, 50, 51, 100, 257, 1000] {
            for modulo in [1u64, 3, 17, 1 << 40] {
                let mut v: Vec<(u64, usize)> = (0..n)
                    .map(|i| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        (seed % modulo, i)
                    })
                    .collect();
                let mut want: Vec<u64> = v.iter().map(|x| x.0).collect();
                want.sort();
                sort_func(&mut v, |a, b| a.0.cmp(&b.0));
                let got: Vec<u64> = v.iter().map(|x| x.0).collect();
                assert_eq!(got, want, "n={n} modulo={modulo}");
                let mut idx: Vec<usize> = v.iter().map(|x| x.1).collect();
                idx.sort();
                assert_eq!(idx, (0..n).collect::<Vec<_>>());
            }
            // Sorted, reversed and organ-pipe inputs take the other paths.
            let mut v: Vec<u64> = (0..n as u64).rev().collect();
            sort_func(&mut v, |a, b| a.cmp(b));
            assert!(v.windows(2).all(|w| w[0] <= w[1]));
            let mut v: Vec<u64> = (0..n as u64).map(|i| i.min(n as u64 - i)).collect();
            sort_func(&mut v, |a, b| a.cmp(b));
            assert!(v.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    /// Go's pdqsort is not stable: equal keys end up in an order only the same algorithm
    /// gives. The expected orders were printed by `slices.SortFunc` in Go 1.27.3 for the same
    /// xorshift-generated keys.
    #[test]
    fn equal_keys_order_matches_go() {
        for (n, want) in [(14usize, &GO_ORDER_14[..]), (60, &GO_ORDER_60[..])] {
            let mut seed = 12345u64;
            let mut v: Vec<(u64, usize)> = (0..n)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 4, i)
                })
                .collect();
            sort_func(&mut v, |a, b| a.0.cmp(&b.0));
            let idx: Vec<usize> = v.iter().map(|x| x.1).collect();
            assert_eq!(idx, want, "n={n}");
        }
    }

    const GO_ORDER_14: [usize; 14] = [3, 12, 11, 10, 1, 2, 0, 6, 9, 4, 8, 7, 5, 13];
    const GO_ORDER_60: [usize; 60] = [
        45, 35, 31, 3, 36, 27, 57, 25, 39, 22, 19, 11, 12, 51, 34, 15, 16, 0, 18, 10, 20, 21, 49,
        43, 47, 54, 26, 58, 28, 37, 59, 2, 32, 1, 44, 53, 4, 6, 56, 55, 52, 41, 9, 46, 17, 14, 23,
        13, 48, 42, 50, 8, 40, 33, 7, 24, 38, 29, 5, 30,
    ];
}
