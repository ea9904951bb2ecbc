//! Choosing where a request goes: a target group by weight, then a target by the group's
//! algorithm. Pure: callers pass the counters and the random draw.

/// `load_balancing.algorithm.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
}

impl Algorithm {
    /// `weighted_random` (anomaly mitigation) is served as round robin: berth has no anomaly
    /// detection to weight by.
    pub fn from_attribute(value: Option<&str>) -> Algorithm {
        match value {
            Some("least_outstanding_requests") => Algorithm::LeastOutstandingRequests,
            _ => Algorithm::RoundRobin,
        }
    }
}

/// The index of the target to use among `count` candidates; `turn` is the group's round-robin
/// counter, which also breaks ties of least outstanding requests so equal targets share the
/// load. `outstanding` yields each candidate's outstanding requests in order and is read only
/// by least outstanding requests (one pass, no allocation on the request path). `None` when
/// there is no candidate.
pub fn pick(
    algorithm: Algorithm,
    count: usize,
    turn: usize,
    outstanding: impl Iterator<Item = usize>,
) -> Option<usize> {
    if count == 0 {
        return None;
    }
    let start = turn % count;
    match algorithm {
        Algorithm::RoundRobin => Some(start),
        // Ties go to the first in turn order from `start`.
        Algorithm::LeastOutstandingRequests => outstanding
            .take(count)
            .enumerate()
            .min_by_key(|&(i, n)| (n, (i + count - start) % count))
            .map(|(i, _)| i),
    }
}

/// The index of a weighted choice, given `draw` uniformly in `0..sum(weights)`. Weight 0 never
/// gets picked; `None` when every weight is 0.
pub fn pick_weighted(weights: &[u32], draw: u64) -> Option<usize> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return None;
    }
    let mut left = draw % total;
    for (i, &w) in weights.iter().enumerate() {
        if left < u64::from(w) {
            return Some(i);
        }
        left -= u64::from(w);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_takes_turns() {
        let picks: Vec<usize> = (0..6)
            .filter_map(|turn| pick(Algorithm::RoundRobin, 3, turn, std::iter::empty()))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(pick(Algorithm::RoundRobin, 0, 3, std::iter::empty()), None);
    }

    #[test]
    fn least_outstanding_prefers_the_idlest_and_rotates_ties() {
        let cases: &[(&[usize], usize, usize)] = &[
            (&[5, 1, 3], 0, 1),
            (&[5, 1, 3], 2, 1),
            (&[2, 2, 9], 0, 0),
            (&[2, 2, 9], 1, 1),
            (&[2, 2, 9], 2, 0),
            (&[0], 7, 0),
        ];
        for &(outstanding, turn, want) in cases {
            assert_eq!(
                pick(
                    Algorithm::LeastOutstandingRequests,
                    outstanding.len(),
                    turn,
                    outstanding.iter().copied()
                ),
                Some(want),
                "{outstanding:?} turn {turn}"
            );
        }
    }

    #[test]
    fn weights_split_draws_in_proportion() {
        let weights = [1, 0, 3];
        let mut counts = [0; 3];
        for draw in 0..400 {
            counts[pick_weighted(&weights, draw).expect("some weight")] += 1;
        }
        assert_eq!(counts, [100, 0, 300]);
        assert_eq!(pick_weighted(&[0, 0], 5), None);
        assert_eq!(pick_weighted(&[], 5), None);
    }

    #[test]
    fn algorithm_attribute_values() {
        assert_eq!(
            Algorithm::from_attribute(Some("least_outstanding_requests")),
            Algorithm::LeastOutstandingRequests
        );
        assert_eq!(
            Algorithm::from_attribute(Some("round_robin")),
            Algorithm::RoundRobin
        );
        assert_eq!(Algorithm::from_attribute(None), Algorithm::RoundRobin);
    }
}
